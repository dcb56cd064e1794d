/**
 * The bubblewrap command line of one sandboxed process, as an argv array (never
 * a shell string). Pure: the driver gathers the paths, this decides the policy.
 *
 * Layout inside: the image bound read-only as `/` (or, when a mount point is
 * missing from it, a tmpfs `/` with each top-level entry of the image bound
 * read-only, made read-only at the end), a private writable
 * `/workspace` (bound from the host), a size-capped tmpfs `/tmp`, a fresh
 * `/proc` for the new pid namespace, a minimal read-only `/dev` with a
 * size-capped `/dev/shm`, then `/` made read-only.
 */
export interface RootEntry {
  /** Name under `/`, e.g. `usr`. */
  name: string;
  /** A symlink target (`usr/bin` for a merged-/usr `/bin`), or the host path to bind read-only. */
  symlink?: string;
  hostPath?: string;
}

export interface BwrapArgsInput {
  bwrapPath: string;
  /**
   * The image dir, bound read-only as `/` in one mount: the fast layout, used
   * when every mount point (`/workspace`, `/tmp`, injected files) exists in it.
   */
  rootDir?: string;
  /** Entries of `/` inside, on a tmpfs made read-only after: the layout that can take any mount point. */
  root: RootEntry[];
  /** Host dir bound read-write at /workspace. */
  workspaceDir: string;
  /** Size of the /tmp tmpfs, in bytes. */
  tmpBytes: number;
  /** Extra read-only binds: [host path, path inside], after the root (e.g. synthesized /etc files, injected files). */
  roBinds: Array<[string, string]>;
  /** Read-write binds (e.g. the egress proxy's unix socket directory). */
  binds?: Array<[string, string]>;
  /** Keep the host's network namespace (only for network modes that allow it). */
  shareNet: boolean;
  hostname: string;
  env: Record<string, string>;
  cwd: string;
  argv: string[];
  /** fd on which bwrap writes `{"child-pid": N}` (the namespace's init, as a host pid). */
  infoFd?: number;
  /**
   * fd from which bwrap reads the environment's `--setenv` arguments
   * (`--args FD`, see {@link envArgs}) instead of its command line, which any
   * local user can read in /proc/<pid>/cmdline: environment values include
   * credentials. Without it the values go on the command line (tests only).
   */
  envArgsFd?: number;
  /**
   * fd from which bwrap reads the seccomp program (`--seccomp FD`) it applies
   * to the sandbox's processes (see seccomp-filter.ts); none when undefined.
   */
  seccompFd?: number;
  /** uid/gid inside. */
  uid: number;
  gid: number;
}

/** Builds the argv that runs `input.argv` under bwrap with every hardening flag. */
export function buildBwrapArgs(input: BwrapArgsInput): string[] {
  const a: string[] = [input.bwrapPath];
  // Namespaces: user, pid, ipc, uts, cgroup, and net unless shared explicitly.
  a.push('--unshare-user', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup');
  if (!input.shareNet) a.push('--unshare-net');
  a.push('--uid', String(input.uid), '--gid', String(input.gid), '--hostname', input.hostname);
  if (input.infoFd !== undefined) a.push('--info-fd', String(input.infoFd));
  // The sandbox dies with the runner; a new session stops TIOCSTI injection
  // into a controlling terminal (CVE-2017-5226).
  a.push('--die-with-parent', '--new-session', '--cap-drop', 'ALL');
  // No nested user namespaces: they are the usual first step of kernel exploits.
  a.push('--disable-userns');
  if (input.seccompFd !== undefined) a.push('--seccomp', String(input.seccompFd));
  if (input.rootDir !== undefined) {
    a.push('--ro-bind', input.rootDir, '/');
  } else {
    a.push('--tmpfs', '/');
    for (const e of input.root) {
      if (e.symlink !== undefined) a.push('--symlink', e.symlink, `/${e.name}`);
      else if (e.hostPath !== undefined) a.push('--ro-bind', e.hostPath, `/${e.name}`);
    }
  }
  for (const [host, inside] of input.roBinds) a.push('--ro-bind', host, inside);
  a.push('--bind', input.workspaceDir, '/workspace');
  for (const [host, inside] of input.binds ?? []) a.push('--bind', host, inside);
  const tmpSize = String(Math.max(1024 * 1024, Math.floor(input.tmpBytes)));
  a.push('--perms', '1777', '--size', tmpSize, '--tmpfs', '/tmp');
  // bwrap's /dev is a tmpfs of its own with no size (half the host's RAM),
  // writable by the sandbox: files there escaped every limit but memory, and
  // under rlimits that one too. /dev is made read-only (its device binds and
  // /dev/pts are mounts of their own and stay usable), and /dev/shm, which
  // POSIX shared memory and semaphores need, is a tmpfs capped as /tmp is.
  a.push('--proc', '/proc', '--dev', '/dev', '--remount-ro', '/dev');
  a.push('--perms', '1777', '--size', tmpSize, '--tmpfs', '/dev/shm');
  if (input.rootDir === undefined) a.push('--remount-ro', '/');
  a.push('--clearenv');
  if (input.envArgsFd !== undefined) a.push('--args', String(input.envArgsFd));
  else for (const [k, v] of Object.entries(input.env)) a.push('--setenv', k, v);
  a.push('--chdir', input.cwd);
  a.push('--', ...input.argv);
  return a;
}

/** The `--setenv NAME VALUE` arguments for `env`, NUL-separated, as bwrap's `--args FD` reads them. */
export function envArgs(env: Record<string, string>): Buffer {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(env)) parts.push('--setenv', k, v);
  return Buffer.from(parts.map((p) => `${p}\0`).join(''), 'utf8');
}

/**
 * Wraps `command` so that the process joins its cgroups before anything runs:
 * the shell script is fixed text, the cgroup files and the command come in as
 * separate argv entries and are never interpolated. `write` says what goes
 * into each file (see SandboxCgroup.join); default its pid (`cgroup.procs`).
 */
export function wrapInCgroup(files: string[], command: string[], write: 'pid' | 'current-thread' = 'pid'): string[] {
  const value = write === 'pid' ? '$$' : '0';
  const script = `while [ "$1" != "--" ]; do echo ${value} > "$1" || exit 125; shift; done; shift; exec "$@"`;
  return ['/bin/sh', '-c', script, 'sandbox-cgroup-wrapper', ...files, '--', ...command];
}

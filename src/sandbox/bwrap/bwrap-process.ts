import { spawn } from 'node:child_process';
import { statfs } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import type { ProcessExit, SandboxProcess } from '../driver.js';
import type { SandboxCgroup } from '../cgroups/cgroups.js';
import { isGone, waitGone } from '../process-gone.js';
import type { SandboxSpawner } from './sandbox-spawner.js';
import type { DirectSpawn } from './spawner-messages.js';
import { SPEC_FD } from './waiting-process.js';

/**
 * A live process in a bwrap sandbox: bwrap's own pid on the host, whose death
 * takes the sandbox's pid namespace (and everything in it) along.
 */
export interface BwrapProcessOptions {
  argv: string[];
  cgroup: SandboxCgroup | undefined;
  /** The host workspace dir, watched for a full disk. */
  workspaceDir: string;
  /** Whether the workspace is a size-capped filesystem of its own (so "full" means the limit). */
  workspaceCapped: boolean;
  /** How often limits are checked while the process runs. */
  monitorIntervalMs: number;
  signal?: AbortSignal;
  /** bwrap's `--setenv` arguments, written to fd ENV_ARGS_FD (`--args`): values stay off every command line. */
  envArgs?: Buffer;
  /** The seccomp program, written to fd SECCOMP_FD (`--seccomp`), when the bwrap line names it. */
  seccomp?: Buffer | undefined;
  /**
   * Pre-start: open one more pipe, the waiter's spec input (fd SPEC_FD), and
   * hold the limit monitor until begin() (the process waits, nothing to watch).
   */
  waiting?: boolean;
  /**
   * Starts a `waiting` process through this spawner (a helper process) instead
   * of a fork of the runner; it rejects when the spawner cannot (the caller may
   * then start it directly). Never used for a process with environment
   * arguments: a waiter's environment comes later, through its spec pipe.
   */
  spawner?: SandboxSpawner;
  /**
   * With `spawner`: the bwrap line alone and how to start it without the
   * wrapper programs (uid/gid, cgroup join), see DirectSpawn; `argv` is then
   * the fallback. A process started here always takes `argv`.
   */
  direct?: DirectSpawn;
}

/** A started process that may still be waiting for its spec (see BwrapProcessOptions.waiting). */
export interface StartedBwrapProcess extends SandboxProcess {
  /** The waiter's spec input; undefined unless started `waiting`. */
  readonly specInput: Writable | undefined;
  /** Whether the process has exited (synchronously known). */
  readonly dead: boolean;
  /** Whether bwrap was started without the wrapper programs (by the spawner, see DirectSpawn). */
  readonly direct: boolean;
  /** Starts watching limits; a no-op unless started `waiting`, and after the first call. */
  begin(): void;
}

/** The fd, in the wrapper and bwrap, from which bwrap reads its environment arguments (`--args`). */
export const ENV_ARGS_FD = 5;

/** The fd, in the wrapper and bwrap, from which bwrap reads the seccomp program (`--seccomp`). */
export const SECCOMP_FD = 6;

/** The wrapper's environment: it and bwrap need nothing of the runner's; the sandbox's own is set with --clearenv. */
const WRAPPER_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };

/** A started wrapper + bwrap process, however it was started (a spawn here, or the spawner helper). */
interface Launched {
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
  /** The waiter's spec input (fd SPEC_FD), when started `waiting`. */
  spec: Writable | undefined;
  /** The host pid of the namespace's init, once bwrap has said it. */
  initPid(): number | undefined;
  direct: boolean;
  /** Rejects when the process could not start. */
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(): void;
  /**
   * Whether the process is already gone though its exit is not reported yet:
   * a process of a spawner that died is reported only once the runner has
   * seen the spawner's exit, and a run must not be handed to it meanwhile.
   */
  gone?: () => boolean;
}

/** Starts `argv` (the wrapper + bwrap line) and watches the sandbox's limits while it runs. */
export async function startBwrapProcess(options: BwrapProcessOptions): Promise<StartedBwrapProcess> {
  const baseline = (await options.cgroup?.events()) ?? { oomKills: 0, pidsMax: 0 };
  const child = options.waiting && options.spawner && !options.envArgs?.length ? await launchBySpawner(options.spawner, options.argv, options.direct, options.seccomp) : launchHere(options);
  let limit: ProcessExit['limit'];
  let dead = false;
  const kill = (): void => {
    if (dead) return;
    child.kill();
  };
  const endFor = (why: NonNullable<ProcessExit['limit']>): void => {
    limit ??= why;
    kill();
  };

  const checkLimits = async (exitCode?: number | null): Promise<void> => {
    if (options.cgroup) {
      const ev = await options.cgroup.events();
      if (ev.oomKills > baseline.oomKills) return endFor('memory');
      if (ev.pidsMax > baseline.pidsMax) return endFor('processes');
    }
    // At exit, a full disk only explains a failure, not a success.
    if (options.workspaceCapped && exitCode !== 0) {
      const fs = await statfs(options.workspaceDir).catch(() => undefined);
      if (fs && fs.bavail === 0) return endFor('disk');
    }
  };
  // Polling: cgroup v1 has no event fd for pids, and a fork bomb or a filler
  // loop that shrugs off EAGAIN/ENOSPC never ends by itself.
  let checking = false;
  let monitor: NodeJS.Timeout | undefined;
  const begin = (): void => {
    if (monitor || dead) return;
    monitor = setInterval(() => {
      if (checking) return;
      checking = true;
      void checkLimits().finally(() => {
        checking = false;
      });
    }, options.monitorIntervalMs);
    monitor.unref();
  };
  if (!options.waiting) begin();

  const onAbort = (): void => kill();
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });

  const exited = child.exit.then(
    ({ code, signal }) => {
      dead = true;
      clearInterval(monitor);
      options.signal?.removeEventListener('abort', onAbort);
      const initPid = child.initPid();
      // One last look: the OOM killer may have ended it between two polls.
      return checkLimits(code)
        .catch(() => undefined)
        // bwrap's death kills the namespace's init, which kills everything else
        // before it exits itself: once it is gone, so is the whole tree.
        .then(() => (initPid === undefined ? undefined : waitGone(initPid)))
        .then(() => {
          if (!limit && signal === 'SIGXFSZ') limit = 'disk';
          // bwrap reports a signalled child as 128 + signo.
          if (!limit && code === 128 + 25) limit = 'disk';
          return { code, signal, ...(limit ? { limit } : {}) } satisfies ProcessExit;
        });
    },
    (err: unknown) => {
      dead = true;
      clearInterval(monitor);
      options.signal?.removeEventListener('abort', onAbort);
      throw err;
    },
  );
  // A spawn failure surfaces through `exited`; avoid an unhandled rejection here.
  exited.catch(() => undefined);
  const specInput = child.spec;
  // The waiter may die before reading (bwrap failed, the sandbox was disposed).
  specInput?.on('error', () => undefined);
  return {
    stdin: child.stdin,
    stdout: child.stdout,
    stderr: child.stderr,
    exited,
    kill,
    specInput,
    get dead() {
      return dead || (child.gone?.() ?? false);
    },
    direct: child.direct,
    begin,
  };
}

/** Spawns the process from the runner itself (a fork of the runner). */
function launchHere(options: BwrapProcessOptions): Launched {
  const child = spawn(options.argv[0]!, options.argv.slice(1), {
    // fd 3: bwrap's --info-fd, naming the host pid of the namespace's init.
    // fd 4 (SPEC_FD) when waiting: the spec the waiter reads, held by the runner alone.
    // fd 5 (ENV_ARGS_FD): the environment's --setenv arguments, read by bwrap itself.
    // fd 6 (SECCOMP_FD): the seccomp program, read (and closed) by bwrap itself.
    stdio: ['pipe', 'pipe', 'pipe', 'pipe', options.waiting ? 'pipe' : 'ignore', 'pipe', ...(options.seccomp ? (['pipe'] as const) : [])],
    env: WRAPPER_ENV,
  });
  const stdio = child.stdio as unknown as Array<(Readable & Writable) | null>;
  const envInput = stdio[ENV_ARGS_FD]!;
  // bwrap may fail before it reads (a bad binary path): nothing to report from here, the exit says it.
  envInput.on('error', () => undefined);
  envInput.end(options.envArgs ?? Buffer.alloc(0));
  if (options.seccomp) {
    const seccompInput = stdio[SECCOMP_FD]!;
    seccompInput.on('error', () => undefined);
    seccompInput.end(options.seccomp);
  }
  let initPid: number | undefined;
  let info = '';
  const infoStream = stdio[3];
  infoStream?.on('data', (c: Buffer) => {
    info += c.toString();
    const m = /"child-pid":\s*(\d+)/.exec(info);
    if (m) initPid = Number(m[1]);
  });
  infoStream?.on('error', () => undefined);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return {
    // The first three are always pipes (stdio above).
    stdin: child.stdin!,
    stdout: child.stdout!,
    stderr: child.stderr!,
    spec: options.waiting ? stdio[SPEC_FD]! : undefined,
    initPid: () => initPid,
    direct: false,
    exit,
    kill: () => {
      try {
        child.kill('SIGKILL');
      } catch {
        // gone already
      }
    },
  };
}

/** Starts the process through the spawner helper (no fork of the runner); its pipes come over as sockets. */
async function launchBySpawner(spawner: SandboxSpawner, argv: string[], direct: DirectSpawn | undefined, seccomp: Buffer | undefined): Promise<Launched> {
  const p = await spawner.spawn(argv, WRAPPER_ENV, direct, seccomp);
  return {
    stdin: p.stdin,
    stdout: p.stdout,
    stderr: p.stderr,
    spec: p.spec,
    initPid: () => p.initPid,
    direct: p.direct,
    exit: p.exit,
    kill: () => p.kill(),
    gone: () => p.spec.destroyed || isGone(p.pid),
  };
}

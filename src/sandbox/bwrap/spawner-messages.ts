/**
 * The messages between the runner and its sandbox spawner (spawner-helper.ts),
 * over the Node IPC channel of the helper process. Both ends are this package
 * at the same version, started together, so plain types suffice (no schema):
 * nothing else can write on the channel.
 */

import type { CgroupTarget } from '../cgroups/cgroup-self-move.js';

/** The stdio pipes of a spawned process, each handed to the runner as its own socket. */
export type SpawnedPipe = 'stdin' | 'stdout' | 'stderr' | 'spec';

/**
 * bwrap started directly, without the wrapper programs: the helper drops to
 * `uid`/`gid` through the spawn options (setgroups(0), setgid, setuid in the
 * child, as `setpriv --reuid --regid --clear-groups` did) and joins `cgroup`
 * by moving itself there around the spawn (cgroup-self-move.ts).
 */
export interface DirectSpawn {
  /** The bwrap line alone. */
  argv: string[];
  uid?: number;
  gid?: number;
  cgroup?: CgroupTarget;
}

/** Runner → helper. */
export type SpawnerRequest =
  /**
   * Start `argv` (a wrapper + bwrap line) with stdio as a pre-started waiter
   * has it (see bwrap-process.ts); with `direct`, start that instead, and
   * `argv` only when the direct start cannot join the cgroup. `seccomp`
   * (base64): the program bwrap reads from fd 6 (`--seccomp 6` in the line).
   */
  | { kind: 'spawn'; id: number; argv: string[]; env: Record<string, string>; direct?: DirectSpawn; seccomp?: string }
  /** SIGKILL process `id` (a no-op once it has exited). */
  | { kind: 'kill'; id: number };

/** Helper → runner. A `pipe` message carries the pipe's socket as its handle. */
export type SpawnerEvent =
  | { kind: 'ready' }
  | { kind: 'pipe'; id: number; pipe: SpawnedPipe }
  /** Every pipe of `id` has been sent; `pid` is the process's host pid; `direct`: started without the wrappers. */
  | { kind: 'spawned'; id: number; pid: number; direct: boolean }
  /** Something the runner should log (a direct start that fell back to the wrapper, and why). */
  | { kind: 'note'; id: number; message: string }
  /** bwrap's --info-fd said the host pid of the sandbox's init. */
  | { kind: 'info'; id: number; childPid: number }
  | { kind: 'exit'; id: number; code: number | null; signal: NodeJS.Signals | null }
  | { kind: 'error'; id: number; message: string };

/** The pipes in the order the helper sends them; `spawned` follows the last. */
export const SPAWNED_PIPES: readonly SpawnedPipe[] = ['stdin', 'stdout', 'stderr', 'spec'];

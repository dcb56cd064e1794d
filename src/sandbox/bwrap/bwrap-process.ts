import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ProcessExit, SandboxProcess } from '../driver.js';
import type { SandboxCgroup } from '../cgroups/cgroups.js';
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
  /**
   * Pre-start: open one more pipe, the waiter's spec input (fd SPEC_FD), and
   * hold the limit monitor until begin() (the process waits, nothing to watch).
   */
  waiting?: boolean;
}

/** A started process that may still be waiting for its spec (see BwrapProcessOptions.waiting). */
export interface StartedBwrapProcess extends SandboxProcess {
  /** The waiter's spec input; undefined unless started `waiting`. */
  readonly specInput: Writable | undefined;
  /** Whether the process has exited (synchronously known). */
  readonly dead: boolean;
  /** Starts watching limits; a no-op unless started `waiting`, and after the first call. */
  begin(): void;
}

/** The fd, in the wrapper and bwrap, from which bwrap reads its environment arguments (`--args`). */
export const ENV_ARGS_FD = 5;

/** Starts `argv` (the wrapper + bwrap line) and watches the sandbox's limits while it runs. */
export async function startBwrapProcess(options: BwrapProcessOptions): Promise<StartedBwrapProcess> {
  const baseline = (await options.cgroup?.events()) ?? { oomKills: 0, pidsMax: 0 };
  const child = spawn(options.argv[0]!, options.argv.slice(1), {
    // fd 3: bwrap's --info-fd, naming the host pid of the namespace's init.
    // fd 4 (SPEC_FD) when waiting: the spec the waiter reads, held by the runner alone.
    // fd 5 (ENV_ARGS_FD): the environment's --setenv arguments, read by bwrap itself.
    stdio: ['pipe', 'pipe', 'pipe', 'pipe', options.waiting ? 'pipe' : 'ignore', 'pipe'],
    // The wrapper and bwrap need nothing from the runner's environment; the
    // sandbox's own environment is set with --clearenv/--setenv.
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  const envInput = (child.stdio as unknown as Array<Writable | null>)[ENV_ARGS_FD]!;
  // bwrap may fail before it reads (a bad binary path): nothing to report from here, the exit says it.
  envInput.on('error', () => undefined);
  envInput.end(options.envArgs ?? Buffer.alloc(0));
  let initPid: number | undefined;
  let info = '';
  const infoStream = child.stdio[3] as Readable | undefined;
  infoStream?.on('data', (c: Buffer) => {
    info += c.toString();
    const m = /"child-pid":\s*(\d+)/.exec(info);
    if (m) initPid = Number(m[1]);
  });
  infoStream?.on('error', () => undefined);
  let limit: ProcessExit['limit'];
  let dead = false;
  const kill = (): void => {
    if (dead) return;
    try {
      child.kill('SIGKILL');
    } catch {
      // gone already
    }
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

  const exited = new Promise<ProcessExit>((resolve, reject) => {
    child.once('error', (err) => {
      dead = true;
      clearInterval(monitor);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      dead = true;
      clearInterval(monitor);
      options.signal?.removeEventListener('abort', onAbort);
      // One last look: the OOM killer may have ended it between two polls.
      void checkLimits(code)
        .catch(() => undefined)
        // bwrap's death kills the namespace's init, which kills everything else
        // before it exits itself: once it is gone, so is the whole tree.
        .then(() => (initPid === undefined ? undefined : waitGone(initPid)))
        .then(() => {
          if (!limit && signal === 'SIGXFSZ') limit = 'disk';
          // bwrap reports a signalled child as 128 + signo.
          if (!limit && code === 128 + 25) limit = 'disk';
          resolve({ code, signal, ...(limit ? { limit } : {}) });
        });
    });
  });
  // A spawn failure surfaces through `exited`; avoid an unhandled rejection here.
  exited.catch(() => undefined);
  const specInput = options.waiting ? (child.stdio[SPEC_FD] as Writable) : undefined;
  // The waiter may die before reading (bwrap failed, the sandbox was disposed).
  specInput?.on('error', () => undefined);
  return {
    // The first three are always pipes (stdio above).
    stdin: child.stdin!,
    stdout: child.stdout!,
    stderr: child.stderr!,
    exited,
    kill,
    specInput,
    get dead() {
      return dead;
    },
    begin,
  };
}

/** Resolves once `pid` is gone or a zombie (bounded: a stuck process is left to dispose()). */
async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    // Synchronous, as cgroup events are: a procfs read must not queue behind other sandboxes' removals.
    let stat: string | undefined;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      stat = undefined;
    }
    if (stat === undefined) return;
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X') return;
    await sleep(i < 20 ? 1 : 5);
  }
}

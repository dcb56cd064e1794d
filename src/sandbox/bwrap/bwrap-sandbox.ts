import { rm, rmdir } from 'node:fs/promises';
import type { Logger } from '../../util/logger.js';
import { describeError, RunnerError } from '../../util/errors.js';
import type { RunRequest, RunResult, Sandbox, SandboxLimits, SandboxProcess, SpawnOptions } from '../driver.js';
import type { SandboxCgroup } from '../cgroups/cgroups.js';
import { runProcess } from '../run-process.js';
import { buildBwrapArgs, envArgs, wrapInCgroup, type RootEntry } from './bwrap-args.js';
import { ENV_ARGS_FD, SECCOMP_FD, startBwrapProcess, type StartedBwrapProcess } from './bwrap-process.js';
import type { SandboxSpawner } from './sandbox-spawner.js';
import type { DirectSpawn } from './spawner-messages.js';
import { encodeSpec, WAITER_ARGV, waiterCanRun } from './waiting-process.js';
import type { SandboxEgress } from '../egress/sandbox-egress.js';

/** Everything a BwrapSandbox needs, gathered by the driver's create(). */
export interface BwrapSandboxInit {
  id: string;
  bwrapPath: string;
  /** Host dir of this sandbox (workspace, synthesized files); removed at dispose. */
  sandboxDir: string;
  workspaceDir: string;
  /** Whether workspaceDir is a size-capped tmpfs mounted by the driver (unmounted at dispose). */
  workspaceMounted: boolean;
  root: RootEntry[];
  /** Set when the image can be bound as `/` in one mount. */
  rootDir: string | undefined;
  roBinds: Array<[string, string]>;
  binds: Array<[string, string]>;
  shareNet: boolean;
  env: Record<string, string>;
  limits: SandboxLimits;
  cgroup: SandboxCgroup | undefined;
  /** Host uid/gid the sandbox runs as (setpriv, or the spawner's spawn options), or undefined to keep the runner's. */
  hostUid: number | undefined;
  /** rlimits applied with prlimit, e.g. `--nproc=256`. */
  rlimits: string[];
  monitorIntervalMs: number;
  logger: Logger;
  /** Whether the image has the shell a pre-started waiter runs; prestart() does nothing without it. */
  waiterShell?: boolean;
  /** Proxy-mode networking, when the sandbox has it. */
  egress?: SandboxEgress | undefined;
  /** The seccomp program bwrap applies (seccomp-filter.ts); undefined on an architecture without one. */
  seccomp?: Buffer | undefined;
  /** Undoes the workspace mount; given by the driver. */
  unmountWorkspace: () => Promise<void>;
  /** Hands `hostUid` back to the driver once nothing of the sandbox is left. */
  releaseHostUid?: () => void;
  /** Starts the pre-started waiter without a fork of the runner (the driver's helper); undefined: spawn here. */
  spawner?: SandboxSpawner | undefined;
}

/** A bubblewrap sandbox: a private workspace and limits, any number of processes. */
export class BwrapSandbox implements Sandbox {
  readonly driver = 'bwrap' as const;
  readonly id: string;
  readonly workspaceDir: string;
  readonly limits: SandboxLimits;
  private readonly live = new Set<SandboxProcess>();
  private disposing: Promise<void> | undefined;
  /** The pre-started process waiting for the first run's spec (prestart()). */
  private waiter: StartedBwrapProcess | undefined;
  /** Set by the first spawn: only a sandbox's first process may be pre-started. */
  private spawned = false;
  /** The waiter being started (prestart() until its process is there). */
  private prestarting: Promise<void> | undefined;

  constructor(private readonly init: BwrapSandboxInit) {
    this.id = init.id;
    this.workspaceDir = init.workspaceDir;
    this.limits = init.limits;
  }

  /** Host pids of every process in the sandbox (from its cgroup; empty without cgroups). For diagnostics and tests. */
  async hostPids(): Promise<number[]> {
    return (await this.init.cgroup?.pids()) ?? [];
  }

  /**
   * How the pre-started waiter was started: `direct` (bwrap by the spawner
   * helper, no wrapper programs), `wrapper` (the cgroup wrapper and setpriv
   * line), or undefined when there is none waiting. For diagnostics and tests.
   */
  get waiterStart(): 'direct' | 'wrapper' | undefined {
    return this.waiter ? (this.waiter.direct ? 'direct' : 'wrapper') : undefined;
  }

  /** The host uid the sandbox's processes run as, when the driver assigned one (running as root). */
  get hostUid(): number | undefined {
    return this.init.hostUid;
  }

  /**
   * The command line of one process: cgroup wrapper → prlimit → setpriv → bwrap,
   * and the environment bwrap reads from fd ENV_ARGS_FD (never on a command line).
   * `waiting`: the pre-started waiter, whose environment, cwd and argv come
   * later through its spec pipe, so bwrap gets an empty environment; then also
   * `direct`, how the spawner helper starts the bwrap line alone (uid/gid and
   * cgroup join done by the spawner itself, see DirectSpawn), when no rlimits
   * apply (prlimit has no spawn option; rlimits only apply without cgroups).
   */
  commandFor(options: Pick<SpawnOptions, 'argv' | 'cwd' | 'env'>, waiting = false): { argv: string[]; envArgs: Buffer; seccomp: Buffer | undefined; direct?: DirectSpawn } {
    const i = this.init;
    const env = waiting ? {} : { ...i.env, ...options.env };
    const bwrap = buildBwrapArgs({
      bwrapPath: i.bwrapPath,
      root: i.root,
      ...(i.rootDir !== undefined ? { rootDir: i.rootDir } : {}),
      workspaceDir: i.workspaceDir,
      tmpBytes: Math.min(i.limits.workspaceBytes, i.limits.memoryBytes),
      roBinds: i.roBinds,
      binds: i.binds,
      shareNet: i.shareNet,
      hostname: 'sandbox',
      env,
      envArgsFd: ENV_ARGS_FD,
      ...(i.seccomp ? { seccompFd: SECCOMP_FD } : {}),
      cwd: waiting ? '/workspace' : (options.cwd ?? '/workspace'),
      argv: waiting ? WAITER_ARGV : i.egress ? i.egress.wrap(options.argv) : options.argv,
      uid: 1000,
      gid: 1000,
      infoFd: 3,
    });
    const setpriv =
      i.hostUid === undefined
        ? []
        : ['setpriv', `--reuid=${i.hostUid}`, `--regid=${i.hostUid}`, '--clear-groups', '--'];
    const prlimit = i.rlimits.length > 0 ? ['prlimit', ...i.rlimits, '--'] : [];
    const command = [...prlimit, ...setpriv, ...bwrap];
    const argv = i.cgroup ? wrapInCgroup(i.cgroup.join.files, command, i.cgroup.join.write) : command;
    const direct: DirectSpawn | undefined =
      waiting && prlimit.length === 0
        ? {
            argv: bwrap,
            ...(i.hostUid !== undefined ? { uid: i.hostUid, gid: i.hostUid } : {}),
            ...(i.cgroup ? { cgroup: i.cgroup.target } : {}),
          }
        : undefined;
    return { argv, envArgs: envArgs(env), seccomp: i.seccomp, ...(direct ? { direct } : {}) };
  }

  /**
   * Starts, ahead of the first run, the bwrap process that run will use: the
   * whole sandbox setup (cgroup join, uid drop, namespaces, mounts) happens
   * now, and the first run only hands over its spec and costs one exec (see
   * waiting-process.ts). Used by the spare sandbox. A waiter never taken is
   * killed by dispose(). Resolves once the process is spawned.
   */
  prestart(): Promise<void> {
    if (this.disposing || this.spawned || this.waiter || this.init.waiterShell === false) return Promise.resolve();
    this.prestarting ??= this.prestartOnce().finally(() => (this.prestarting = undefined));
    return this.prestarting;
  }

  private async prestartOnce(): Promise<void> {
    const options = {
      ...this.commandFor({ argv: [] }, true),
      cgroup: this.init.cgroup,
      workspaceDir: this.workspaceDir,
      workspaceCapped: this.init.workspaceMounted,
      monitorIntervalMs: this.init.monitorIntervalMs,
      waiting: true,
    };
    const spawner = this.init.spawner;
    const proc = spawner
      ? await startBwrapProcess({ ...options, spawner }).catch((err: unknown) => {
          // The helper could not (it died, it could not start): the waiter is started from here instead.
          this.init.logger.warn({ err: describeError(err), sandbox: this.id }, 'the sandbox spawner failed; starting the waiter from the runner');
          return startBwrapProcess(options);
        })
      : await startBwrapProcess(options);
    this.track(proc);
    // A dispose that came while it started: the waiter is not needed. A spawn
    // that came meanwhile waits for it (spawn()): it is further along than a new process.
    if (this.disposing) proc.kill();
    else this.waiter = proc;
  }

  /** Hands the run to the pre-started waiter when there is one that can run it exactly as bwrap would. */
  private takeWaiter(options: SpawnOptions): SandboxProcess | undefined {
    const waiter = this.waiter;
    this.waiter = undefined;
    if (!waiter) return undefined;
    const i = this.init;
    const env = { ...i.env, ...options.env };
    const cwd = options.cwd ?? '/workspace';
    const argv = i.egress ? i.egress.wrap(options.argv) : options.argv;
    if (waiter.dead || !waiter.specInput || !waiterCanRun(argv, env, cwd)) {
      waiter.kill();
      return undefined;
    }
    const signal = options.signal;
    if (signal) {
      const onAbort = (): void => waiter.kill();
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        void waiter.exited.catch(() => undefined).finally(() => signal.removeEventListener('abort', onAbort));
      }
    }
    waiter.specInput.end(encodeSpec({ argv, env, cwd }));
    waiter.begin();
    return waiter;
  }

  private track(proc: SandboxProcess): void {
    this.live.add(proc);
    void proc.exited.catch(() => undefined).finally(() => this.live.delete(proc));
  }

  async spawn(options: SpawnOptions): Promise<SandboxProcess> {
    if (this.disposing) throw new RunnerError('sandbox_failed', `sandbox ${this.id} is disposed; create a new sandbox`);
    if (options.argv.length === 0) throw new RunnerError('invalid_input', 'argv is empty; give at least the program to run');
    const first = !this.spawned;
    this.spawned = true;
    if (first && this.prestarting) await this.prestarting.catch(() => undefined);
    if (this.disposing) throw new RunnerError('sandbox_failed', `sandbox ${this.id} is disposed; create a new sandbox`);
    const taken = this.takeWaiter(options);
    if (taken) return taken;
    const proc = await startBwrapProcess({
      ...this.commandFor(options),
      cgroup: this.init.cgroup,
      workspaceDir: this.workspaceDir,
      workspaceCapped: this.init.workspaceMounted,
      monitorIntervalMs: this.init.monitorIntervalMs,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    this.track(proc);
    return proc;
  }

  async run(request: RunRequest): Promise<RunResult> {
    const startedAt = Date.now();
    const wallTimeMs = Math.min(request.timeoutMs ?? this.limits.wallTimeMs, this.limits.wallTimeMs);
    const proc = await this.spawn({
      argv: request.argv,
      ...(request.cwd ? { cwd: request.cwd } : {}),
      ...(request.env ? { env: request.env } : {}),
    });
    const result = await runProcess(proc, {
      outputBytes: this.limits.outputBytes,
      wallTimeMs,
      startedAt,
      ...(request.stdin !== undefined ? { stdin: request.stdin } : {}),
      ...(request.onOutput ? { onOutput: request.onOutput } : {}),
      ...(request.signal ? { signal: request.signal } : {}),
    });
    if (result.exitCode === 1 && result.stdout.length === 0 && /^bwrap: /.test(result.stderr.toString())) {
      throw new RunnerError('sandbox_failed', `bwrap could not set up sandbox ${this.id}; check the detail and run sandbox-runner doctor`, {
        detail: result.stderr.toString().slice(0, 2000),
      });
    }
    return result;
  }

  /** Kills every process in the sandbox, removes its cgroup, workspace and files. Idempotent. */
  dispose(): Promise<void> {
    this.disposing ??= this.disposeOnce();
    return this.disposing;
  }

  private async disposeOnce(): Promise<void> {
    let first: unknown;
    const step = async (fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        first ??= err;
      }
    };
    for (const p of this.live) p.kill();
    await step(async () => {
      await Promise.all([...this.live].map((p) => p.exited.catch(() => undefined)));
    });
    if (this.init.cgroup) await step(() => this.init.cgroup!.remove());
    if (this.init.egress) await step(() => this.init.egress!.listener.close());
    await step(() => this.init.unmountWorkspace());
    await step(() => removeSandboxDir(this.init.sandboxDir, this.workspaceDir));
    // A disposal that failed may have left a process running as this uid: it stays taken.
    if (first === undefined) this.init.releaseHostUid?.();
    if (first !== undefined) {
      this.init.logger.warn({ err: first, sandbox: this.id }, 'sandbox dispose was incomplete');
      throw first instanceof RunnerError
        ? first
        : new RunnerError('sandbox_failed', `sandbox ${this.id} was not fully removed; check for leftover mounts under ${this.init.sandboxDir}`, { cause: first });
    }
  }
}

/**
 * Removes the sandbox's host folder. Usually it holds only the workspace's
 * mount point, empty once unmounted: two rmdirs, where a recursive rm walks it
 * with a stat and a readdir per entry; anything else there (injected files,
 * the fallback /etc, the egress folder) takes the recursive rm.
 */
async function removeSandboxDir(sandboxDir: string, workspaceDir: string): Promise<void> {
  try {
    await rmdir(workspaceDir);
    await rmdir(sandboxDir);
  } catch {
    await rm(sandboxDir, { recursive: true, force: true });
  }
}

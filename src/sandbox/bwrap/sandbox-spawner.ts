import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RunnerError } from '../../util/errors.js';
import { noopLogger, type Logger } from '../../util/logger.js';
import { PACKAGE_ROOT } from '../../util/package-info.js';
import { waitGone } from '../process-gone.js';
import { SPAWNED_PIPES, type DirectSpawn, type SpawnedPipe, type SpawnerEvent, type SpawnerRequest } from './spawner-messages.js';

/** A process started by the spawner, its pipes held by the runner alone. */
export interface SpawnedProcess {
  /** Host pid of the process (bwrap, or the wrapper that execs it). */
  readonly pid: number;
  /** Whether bwrap was started directly (see DirectSpawn), not through the wrapper line. */
  readonly direct: boolean;
  readonly stdin: Socket;
  readonly stdout: Socket;
  readonly stderr: Socket;
  /** The waiter's spec input (its fd 4). */
  readonly spec: Socket;
  /** Host pid of the sandbox's init, once bwrap has said it. */
  readonly initPid: number | undefined;
  /**
   * Settles when the process has exited. When the spawner itself dies, its
   * processes die with it (bwrap --die-with-parent): each then settles as
   * SIGKILLed, once it is gone from the process table.
   */
  readonly exit: Promise<ProcessEnd>;
  /** SIGKILL. Idempotent; a no-op once exited. */
  kill(): void;
}

type ProcessEnd = { code: number | null; signal: NodeJS.Signals | null };

interface Live {
  proc: SpawnedProcess;
  pipes: Partial<Record<SpawnedPipe, Socket>>;
  resolve: (p: SpawnedProcess) => void;
  reject: (err: Error) => void;
  settle: (exit: ProcessEnd) => void;
  pid?: number;
  direct?: boolean;
  initPid?: number;
  exited: boolean;
}

/**
 * The runner's side of the sandbox spawner (spawner-helper.ts): one small
 * helper process, started on first use, through which spare sandboxes start
 * their pre-started waiters without a fork of the runner. Started again on the
 * next spawn after it died; every spawn in flight when it dies fails, and each
 * process it had started is reported killed — a call never waits on a spawner
 * that is gone. The helper never keeps the runner alive while idle.
 */
export class SandboxSpawner {
  private readonly logger: Logger;
  private child: ChildProcess | undefined;
  private ready: Promise<ChildProcess> | undefined;
  private readonly live = new Map<number, Live>();
  private nextId = 1;
  private closed = false;

  constructor(options: { logger?: Logger } = {}) {
    this.logger = options.logger ?? noopLogger;
  }

  /**
   * Spawns `argv` in the helper with a waiter's stdio; with `direct`, bwrap
   * without the wrappers, and `argv` only when the helper cannot join the
   * cgroup itself (logged). Rejects when the helper cannot start or spawn it.
   */
  async spawn(argv: string[], env: Record<string, string>, direct?: DirectSpawn, seccomp?: Buffer): Promise<SpawnedProcess> {
    if (this.closed) throw new RunnerError('sandbox_failed', 'the sandbox spawner is closed; the runner is stopping');
    const child = await this.helper();
    const id = this.nextId++;
    return new Promise<SpawnedProcess>((resolve, reject) => {
      let settle!: Live['settle'];
      const exit = new Promise<ProcessEnd>((r) => (settle = r));
      const entry: Live = { pipes: {}, resolve, reject, settle, exited: false, proc: undefined as unknown as SpawnedProcess };
      entry.proc = {
        get pid() {
          return entry.pid!;
        },
        get direct() {
          return entry.direct ?? false;
        },
        get stdin() {
          return entry.pipes.stdin!;
        },
        get stdout() {
          return entry.pipes.stdout!;
        },
        get stderr() {
          return entry.pipes.stderr!;
        },
        get spec() {
          return entry.pipes.spec!;
        },
        get initPid() {
          return entry.initPid;
        },
        exit,
        kill: () => {
          if (!entry.exited) this.send(child, { kind: 'kill', id });
        },
      };
      this.live.set(id, entry);
      this.send(child, { kind: 'spawn', id, argv, env, ...(direct ? { direct } : {}), ...(seccomp ? { seccomp: seccomp.toString('base64') } : {}) });
      this.refresh(child);
    });
  }

  /** Ends the helper (and whatever it still runs). Idempotent. */
  async dispose(): Promise<void> {
    this.closed = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    // Closing the channel makes it kill its processes and exit.
    if (child.connected) child.disconnect();
    else child.kill('SIGKILL');
    await gone;
  }

  /** The helper's pid while it runs (diagnostics, tests). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  private send(child: ChildProcess, req: SpawnerRequest): void {
    if (child.connected) child.send(req, undefined, undefined, () => undefined);
  }

  private helper(): Promise<ChildProcess> {
    if (this.ready) return this.ready;
    const child = fork(helperPath(), [], {
      // Not the runner's flags (--cpu-prof, inspector): a plain small Node.
      execArgv: ['--max-old-space-size=32'],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
      serialization: 'json',
    });
    this.child = child;
    const ready = new Promise<ChildProcess>((resolve, reject) => {
      child.on('message', (ev: SpawnerEvent, handle: unknown) => {
        if (ev.kind === 'ready') resolve(child);
        else this.onEvent(ev, handle as Socket | undefined);
      });
      child.once('error', (err) => {
        reject(new RunnerError('sandbox_failed', 'the sandbox spawner could not start; check the detail', { detail: err.message }));
        this.onGone(child);
      });
      child.once('exit', (code, signal) => {
        reject(new RunnerError('sandbox_failed', `the sandbox spawner exited while starting (${signal ?? `exit ${code}`}); check the runner's stderr`));
        this.onGone(child);
      });
    });
    this.ready = ready;
    // Held alive while it starts (a spawn waits for it), let go once idle.
    ready.then(() => this.refresh(child), () => undefined);
    return ready;
  }

  private onEvent(ev: SpawnerEvent, handle: Socket | undefined): void {
    if (ev.kind === 'ready') return;
    const entry = this.live.get(ev.id);
    if (!entry) {
      handle?.destroy();
      return;
    }
    switch (ev.kind) {
      case 'pipe':
        if (handle) {
          // Errors (EPIPE from a process that died) surface through the exit.
          handle.on('error', () => undefined);
          entry.pipes[ev.pipe] = handle;
        }
        return;
      case 'note':
        this.logger.warn({ detail: ev.message }, 'the sandbox spawner could not start bwrap directly; it used the cgroup wrapper');
        return;
      case 'spawned':
        entry.pid = ev.pid;
        entry.direct = ev.direct;
        if (SPAWNED_PIPES.some((p) => !entry.pipes[p])) {
          entry.reject(new RunnerError('sandbox_failed', 'the sandbox spawner did not hand over every pipe; this is a bug in the runner'));
          this.kill(ev.id);
          return;
        }
        entry.resolve(entry.proc);
        return;
      case 'info':
        entry.initPid = ev.childPid;
        return;
      case 'error':
        this.finish(ev.id, entry, { code: null, signal: null });
        entry.reject(new RunnerError('sandbox_failed', 'the sandbox spawner could not start a sandbox process; check the detail', { detail: ev.message }));
        return;
      case 'exit':
        this.finish(ev.id, entry, { code: ev.code, signal: ev.signal });
        return;
    }
  }

  private kill(id: number): void {
    if (this.child) this.send(this.child, { kind: 'kill', id });
  }

  private finish(id: number, entry: Live, exit: ProcessEnd): void {
    this.live.delete(id);
    entry.exited = true;
    entry.settle(exit);
    if (this.child) this.refresh(this.child);
  }

  /** The helper died: its processes died with it (--die-with-parent); report each once it is gone. */
  private onGone(child: ChildProcess): void {
    if (this.child !== child) return;
    this.child = undefined;
    this.ready = undefined;
    const lost = [...this.live];
    this.live.clear();
    for (const [, entry] of lost) {
      entry.exited = true;
      entry.reject(new RunnerError('sandbox_failed', 'the sandbox spawner ended before the sandbox process started; the next spawn starts a new one'));
      for (const p of Object.values(entry.pipes)) p?.destroy();
      void Promise.all([entry.pid, entry.initPid].map((pid) => (pid === undefined ? undefined : waitGone(pid)))).then(() =>
        entry.settle({ code: null, signal: 'SIGKILL' }),
      );
    }
  }

  /** An idle helper never keeps the runner alive; one with processes to report on does. */
  private refresh(child: ChildProcess): void {
    if (this.live.size > 0) {
      child.ref();
      (child.channel as { ref?: () => void } | undefined)?.ref?.();
    } else {
      child.unref();
      (child.channel as { unref?: () => void } | undefined)?.unref?.();
    }
  }
}

/**
 * The helper's entry point. Next to this file once compiled; when this module
 * is loaded from TypeScript source (the test runner), the compiled copy in dist/.
 */
function helperPath(): string {
  const here = fileURLToPath(new URL('./spawner-helper.js', import.meta.url));
  if (existsSync(here)) return here;
  const built = path.join(PACKAGE_ROOT, 'dist', 'src', 'sandbox', 'bwrap', 'spawner-helper.js');
  if (existsSync(built)) return built;
  throw new RunnerError('sandbox_failed', `sandbox spawner not found at ${built}; run npm run build`);
}

import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PACKAGE_ROOT } from '../../util/package-info.js';
import { noopLogger, type Logger } from '../../util/logger.js';
import { RunnerError } from '../../util/errors.js';
import type { EvaluateDone, HostEvent, HostRequest } from './isolate-messages.js';

export interface IsolatePoolOptions {
  /** Host processes to spread evaluations over. Default 1. */
  size?: number;
  /** Default memory limit of one isolate, MB. Default 64. */
  memoryMb?: number;
  /** Default time limit of one evaluation, ms. Default 5000. */
  timeoutMs?: number;
  /** Extra time the watchdog grants past the deadline before it kills the host. Default 2000. */
  watchdogGraceMs?: number;
  logger?: Logger;
}

export interface EvaluateOptions {
  code: string;
  timeoutMs?: number;
  memoryMb?: number;
  signal?: AbortSignal;
  onOutput?: (stream: 'stdout' | 'stderr', data: string) => void;
}

export type EvaluateResult = Omit<EvaluateDone, 'kind' | 'id'> & { durationMs: number };

interface Pending {
  resolve: (r: EvaluateDone) => void;
  onOutput: EvaluateOptions['onOutput'];
}

/**
 * The host's entry point. Next to this file once compiled; when this module is
 * loaded from TypeScript source (the test runner), the compiled copy in dist/.
 */
function hostPath(): string {
  const here = fileURLToPath(new URL('./isolate-host.js', import.meta.url));
  if (existsSync(here)) return here;
  const built = path.join(PACKAGE_ROOT, 'dist', 'src', 'sandbox', 'isolate', 'isolate-host.js');
  if (existsSync(built)) return built;
  throw new RunnerError('sandbox_failed', `isolate host not found at ${built}; run npm run build`);
}

/** One supervised isolate host process. */
class IsolateHostProcess {
  private child: ChildProcess | undefined;
  private readyPromise: Promise<void> | undefined;
  readonly pending = new Map<number, Pending>();
  restarts = 0;
  private closing = false;

  constructor(
    private readonly logger: Logger,
    private readonly index: number,
  ) {}

  private spawn(): Promise<void> {
    // isolated-vm needs --no-node-snapshot on Node 20; the daemon itself does not.
    const child = fork(hostPath(), [], {
      execArgv: ['--no-node-snapshot'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { NODE_ENV: process.env.NODE_ENV ?? 'production' },
      serialization: 'advanced',
    });
    this.child = child;
    const ready = new Promise<void>((resolve, reject) => {
      const onEvent = (ev: HostEvent) => {
        if (ev.kind === 'ready') resolve();
        else if (ev.kind === 'output') this.pending.get(ev.id)?.onOutput?.(ev.stream, ev.data);
        else if (ev.kind === 'done') {
          const p = this.pending.get(ev.id);
          this.pending.delete(ev.id);
          p?.resolve(ev);
        }
      };
      child.on('message', onEvent);
      child.once('error', reject);
      child.once('exit', (code, signal) => {
        reject(new RunnerError('sandbox_failed', `isolate host exited during start (code ${code}, signal ${signal})`));
        if (this.child === child) {
          this.child = undefined;
          this.readyPromise = undefined;
        }
        // Everything in flight in this host is lost: answer each call, never hang.
        for (const [id, p] of this.pending) {
          p.resolve({ kind: 'done', id, outcome: 'threw', error: 'the isolate host crashed; the call did not finish' });
        }
        this.pending.clear();
        if (!this.closing) this.restarts++;
        if (code !== 0 && signal !== 'SIGKILL') {
          this.logger.warn({ host: this.index, code, signal }, 'isolate host exited; it restarts on the next call');
        }
      });
    });
    return ready;
  }

  async ensure(): Promise<ChildProcess> {
    if (!this.readyPromise) {
      this.readyPromise = this.spawn();
    }
    await this.readyPromise;
    if (!this.child) throw new RunnerError('sandbox_failed', 'isolate host is not running; try the call again');
    return this.child;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  send(req: HostRequest): void {
    this.child?.send(req);
  }

  /** The watchdog's last resort: kill the host (and every evaluation in it). */
  kill(): void {
    const child = this.child;
    if (child && child.exitCode === null) child.kill('SIGKILL');
  }

  async close(): Promise<void> {
    this.closing = true;
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }
}

/**
 * Runs JavaScript in V8 isolates inside supervised child processes. Each
 * evaluation gets a fresh isolate with memory and time limits; a watchdog in
 * the daemon kills a host that does not answer past its deadline, and a host
 * that crashed is started again on the next call.
 */
export class IsolatePool {
  private readonly hosts: IsolateHostProcess[];
  private readonly memoryMb: number;
  private readonly timeoutMs: number;
  private readonly graceMs: number;
  private readonly logger: Logger;
  private nextId = 1;
  private nextHost = 0;
  private closed = false;

  constructor(options: IsolatePoolOptions = {}) {
    this.logger = options.logger ?? noopLogger;
    this.memoryMb = options.memoryMb ?? 64;
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.graceMs = options.watchdogGraceMs ?? 2000;
    const size = Math.max(1, options.size ?? 1);
    this.hosts = Array.from({ length: size }, (_, i) => new IsolateHostProcess(this.logger, i));
  }

  /** Host restarts so far (crashes and watchdog kills). */
  get restarts(): number {
    return this.hosts.reduce((n, h) => n + h.restarts, 0);
  }

  /** Process ids of the running hosts (for operators and fault tests). */
  hostPids(): number[] {
    return this.hosts.map((h) => h.pid).filter((p): p is number => p !== undefined);
  }

  /** Starts the host processes ahead of the first call. */
  async warm(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.ensure()));
  }

  /** Evaluates `code`; never throws for the code's own failures (see `outcome`). */
  async evaluate(options: EvaluateOptions): Promise<EvaluateResult> {
    if (this.closed) throw new RunnerError('sandbox_failed', 'the isolate pool is closed');
    const started = performance.now();
    const host = this.hosts[this.nextHost++ % this.hosts.length]!;
    await host.ensure();
    const id = this.nextId++;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const signal = options.signal;
    const done = new Promise<EvaluateDone>((resolve) => {
      host.pending.set(id, { resolve, onOutput: options.onOutput });
    });
    const onAbort = () => host.send({ kind: 'cancel', id });
    signal?.addEventListener('abort', onAbort, { once: true });
    const watchdog = setTimeout(() => {
      this.logger.error({ timeoutMs }, 'isolate host missed its deadline; killing it');
      host.kill();
    }, timeoutMs + this.graceMs);
    try {
      if (signal?.aborted) return { outcome: 'cancelled', error: 'cancelled', durationMs: 0 };
      host.send({ kind: 'evaluate', id, code: options.code, timeoutMs, memoryMb: options.memoryMb ?? this.memoryMb });
      const { kind: _k, id: _i, ...rest } = await done;
      return { ...rest, durationMs: performance.now() - started };
    } finally {
      clearTimeout(watchdog);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Kills every host. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.hosts.map((h) => h.close()));
  }
}

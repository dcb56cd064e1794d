import type { DriverName, InjectedFile, NetworkSpec, SandboxMount, Sandbox, SandboxDriver, SandboxLimits } from '../sandbox/driver.js';
import type { SessionState } from '../tools/tool.js';
import { RunnerError } from '../util/errors.js';
import { noopLogger, type Logger } from '../util/logger.js';
import { randomBytes } from 'node:crypto';

type Disposable = { dispose(): Promise<void> };

/** A sandbox made (+1) or removed (-1), for metrics and the audit log. */
export interface SandboxChange {
  driver: string;
  delta: 1 | -1;
  sandboxId: string;
  sessionId: string;
}

/** In-memory per-session tool state (the bash tool's shell); disposed with the session. */
export class MemorySessionState implements SessionState {
  private readonly values = new Map<string, Disposable>();
  get<T extends Disposable>(key: string): T | undefined {
    return this.values.get(key) as T | undefined;
  }
  set<T extends Disposable>(key: string, value: T): void {
    this.values.set(key, value);
  }
  delete(key: string): void {
    this.values.delete(key);
  }
  async dispose(): Promise<void> {
    const all = [...this.values.values()];
    this.values.clear();
    await Promise.allSettled(all.map((v) => v.dispose()));
  }
}

export interface SessionSpec {
  driver: Exclude<DriverName, 'isolate'>;
  image: string;
  limits: SandboxLimits;
  network: NetworkSpec;
  env: Record<string, string>;
  labels?: Record<string, string>;
  files?: InjectedFile[];
  mounts?: SandboxMount[];
  /** Runs once when the session is disposed (wipes session credentials). */
  onDispose?: () => void;
}

/**
 * A sandbox that lives across tool calls. The sandbox itself is made on the
 * first call that needs one, so a session used only for `javascript` costs nothing.
 */
export class Session {
  readonly state = new MemorySessionState();
  lastUsed = Date.now();
  active = 0;
  private sandboxPromise: Promise<Sandbox> | undefined;
  private disposed = false;

  constructor(
    readonly id: string,
    readonly spec: SessionSpec,
    private readonly driver: () => SandboxDriver,
    readonly ephemeral: boolean,
    private readonly onSandbox: (change: SandboxChange) => void = () => undefined,
    /**
     * Hands over a sandbox made ahead for this spec (the spare), if there is
     * one; asked only when a call first needs a sandbox, so a call that never
     * does (javascript on the isolate) leaves the spare for the next.
     */
    private takeSpare?: () => Promise<Sandbox> | undefined,
  ) {}

  #tookSpare = false;

  /** True when this session's sandbox is a spare made ahead. */
  get tookSpare(): boolean {
    return this.#tookSpare;
  }

  /** The session's sandbox, created on first use. */
  sandbox(signal?: AbortSignal): Promise<Sandbox> {
    if (this.disposed) return Promise.reject(new RunnerError('sandbox_failed', `session ${this.id} is closed`));
    const spare = this.sandboxPromise ? undefined : this.takeSpare?.();
    this.takeSpare = undefined;
    if (spare) {
      this.#tookSpare = true;
      // A spare whose making failed is replaced by a sandbox made now.
      this.sandboxPromise = spare.catch(() => this.create(signal));
      this.sandboxPromise.catch(() => {
        this.sandboxPromise = undefined;
      });
    }
    if (!this.sandboxPromise) {
      this.sandboxPromise = this.create(signal);
      // A failed creation may be retried by the next call.
      this.sandboxPromise.catch(() => {
        this.sandboxPromise = undefined;
      });
    }
    return this.sandboxPromise;
  }

  private create(signal?: AbortSignal): Promise<Sandbox> {
    const sandboxId = `sr-${randomBytes(6).toString('hex')}`;
    return this.driver()
      .create(
        {
          id: sandboxId,
          image: this.spec.image,
          limits: this.spec.limits,
          network: this.spec.network,
          env: this.spec.env,
          ...(this.spec.files ? { files: this.spec.files } : {}),
          ...(this.spec.mounts ? { mounts: this.spec.mounts } : {}),
        },
        signal,
      )
      .then((s) => {
        this.onSandbox({ driver: this.spec.driver, delta: 1, sandboxId: s.id, sessionId: this.id });
        return s;
      });
  }

  /** True once a call has asked for the sandbox (it exists or is being made for it). */
  get hasSandbox(): boolean {
    return this.sandboxPromise !== undefined;
  }

  /** Disposes tool state, then the sandbox. Idempotent; keeps the first error. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    let first: unknown;
    try {
      await this.state.dispose().catch((e: unknown) => (first ??= e));
      const p = this.sandboxPromise;
      this.sandboxPromise = undefined;
      this.takeSpare = undefined;
      if (p) {
        const sb = await p.catch(() => undefined);
        if (sb) {
          await sb.dispose().catch((e: unknown) => (first ??= e));
          this.onSandbox({ driver: this.spec.driver, delta: -1, sandboxId: sb.id, sessionId: this.id });
        }
      }
    } finally {
      // After the sandbox is gone, so no process of the session still reads a credential file.
      try {
        this.spec.onDispose?.();
      } catch (e) {
        first ??= e;
      }
    }
    if (first) throw first;
  }
}

export interface SessionManagerOptions {
  idleTimeoutMs: number;
  max: number;
  logger?: Logger;
  onChange?: (open: number) => void;
  onSandboxChange?: (change: SandboxChange) => void;
}

/** Open sessions by id, with an idle timeout and explicit close. */
export class SessionManager {
  private readonly sessions = new Map<string, Session>();
  private readonly timer: NodeJS.Timeout;
  private readonly logger: Logger;

  constructor(private readonly options: SessionManagerOptions) {
    this.logger = options.logger ?? noopLogger;
    this.timer = setInterval(() => void this.sweep(), Math.min(30_000, Math.max(250, options.idleTimeoutMs / 4)));
    this.timer.unref();
  }

  get size(): number {
    return this.sessions.size;
  }

  get(id: string): Session | undefined {
    return this.sessions.get(id);
  }

  /** Opens a session; an id already open is returned as it is (a redelivered open). */
  open(id: string, spec: SessionSpec, driver: () => SandboxDriver): Session {
    const existing = this.sessions.get(id);
    if (existing) return existing;
    if (this.sessions.size >= this.options.max) {
      throw new RunnerError('limit_exceeded', `this runner has ${this.options.max} sessions open, its limit; close one first`);
    }
    const s = new Session(id, spec, driver, false, this.options.onSandboxChange);
    this.sessions.set(id, s);
    this.options.onChange?.(this.sessions.size);
    return s;
  }

  /** A throwaway session for one call, optionally on a spare sandbox made ahead; the caller disposes it. */
  ephemeral(spec: SessionSpec, driver: () => SandboxDriver, takeSpare?: () => Promise<Sandbox> | undefined): Session {
    return new Session(`call-${randomBytes(6).toString('hex')}`, spec, driver, true, this.options.onSandboxChange, takeSpare);
  }

  async close(id: string): Promise<boolean> {
    const s = this.sessions.get(id);
    if (!s) return false;
    this.sessions.delete(id);
    this.options.onChange?.(this.sessions.size);
    await s.dispose();
    return true;
  }

  async closeAll(): Promise<void> {
    clearInterval(this.timer);
    const all = [...this.sessions.keys()];
    await Promise.allSettled(all.map((id) => this.close(id)));
  }

  private async sweep(): Promise<void> {
    const now = Date.now();
    for (const [id, s] of this.sessions) {
      if (s.active === 0 && now - s.lastUsed > this.options.idleTimeoutMs) {
        this.logger.info({ sessionId: id }, 'closing idle session');
        await this.close(id).catch((err: unknown) => this.logger.warn({ sessionId: id, err: String(err) }, 'closing an idle session failed'));
      }
    }
  }
}

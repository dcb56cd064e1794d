import { describeIssues, type CallStatus, type LimitsRequest, type ToolResultContent } from '../protocol/index.js';
import { DEFAULT_LIMITS, type DriverName, type InjectedFile, type NetworkSpec, type SandboxMount, type OutputStream, type Sandbox, type SandboxLimits } from '../sandbox/driver.js';
import type { ToolContext, ToolDefinition, ToolOutcome } from '../tools/tool.js';
import { describeError, isRunnerError, RunnerError } from '../util/errors.js';
import { noopLogger, type Logger } from '../util/logger.js';
import { noMetrics, noRedaction, type ExecutorOptions } from './executor-options.js';
import { Session, SessionManager, type SandboxChange, type SessionSpec } from './session-manager.js';
import { SpareSandbox } from './spare-sandbox.js';
import type { CallSpan } from '../tracing/index.js';

export type CallSource = 'control-plane' | 'managed-agents';

export interface DispatchRequest {
  callId: string;
  source: CallSource;
  name: string;
  input: unknown;
  /** An open session to run in; without one the call gets a fresh sandbox removed after it. */
  sessionId?: string;
  timeoutMs?: number;
  /** Aborted by the caller (cancel from upstream, lease lost). */
  signal?: AbortSignal;
  /** Redacted output chunks, in order; awaited (backpressure). */
  onOutput?: (stream: OutputStream, chunk: Buffer) => Promise<void> | void;
  /** Extra sandbox environment for this call (credentials). */
  env?: Record<string, string>;
  /** Credential files for this call's fresh sandbox (placed before anything runs). */
  files?: InjectedFile[];
  /** The call's span; the executor's steps become its children. */
  span?: CallSpan;
  /** Vault entries the call names (checked against local policy). */
  vaultRefs?: string[];
  /** Domains the call's fresh sandbox may reach through the egress proxy (checked against local policy); not with a session. */
  network?: { allow: string[] };
}

export interface DispatchResult extends ToolOutcome {
  durationMs: number;
}

export interface OpenSessionRequest {
  driver?: DriverName;
  image?: string;
  limits?: LimitsRequest;
  network?: { allow: string[] };
  labels?: Record<string, string>;
  /** Host directories bound inside the session's sandbox. */
  mounts?: SandboxMount[];
  /** Session credentials: environment for every process of the session. */
  env?: Record<string, string>;
  /** Session credential files, placed when the session's sandbox is made. */
  files?: InjectedFile[];
  /** Vault entries the session names (checked against local policy). */
  vaultRefs?: string[];
  /** Called once when the session is closed (wipes its credentials); also when opening fails. */
  onClose?: () => void;
}

/**
 * The dispatcher every connector feeds: checks the input against the tool's
 * schema, runs the tool in its sandbox under limits and a deadline, streams
 * redacted output, and answers with a tool_result outcome. Tool failures are
 * outcomes, never exceptions.
 */
export class Executor {
  private readonly tools = new Map<string, ToolDefinition<any>>();
  private readonly otherTools = new Map<CallSource, Map<string, ToolDefinition<any>>>();
  private readonly running = new Map<string, AbortController>();
  private readonly waiting: Array<() => void> = [];
  /** Fresh sandboxes of finished calls still being removed (awaited by shutdown). */
  private readonly disposals = new Set<Promise<void>>();
  private active = 0;
  private draining = false;
  readonly sessions: SessionManager;
  private readonly logger: Logger;
  /** The fresh sandboxes made ahead for the next calls without a session (options.spareSandbox). */
  private readonly spare: SpareSandbox | undefined;

  constructor(private readonly options: ExecutorOptions) {
    for (const t of options.tools) this.tools.set(t.name, t);
    for (const [source, tools] of Object.entries(options.sourceTools ?? {})) {
      this.otherTools.set(source as CallSource, new Map(tools.map((t) => [t.name, t])));
    }
    this.logger = options.logger ?? noopLogger;
    const metrics = options.metrics ?? noMetrics;
    const onSandbox = (c: SandboxChange): void => {
      metrics.sandboxes(c.driver, c.delta);
      this.options.audit?.append({ type: c.delta > 0 ? 'sandbox.started' : 'sandbox.ended', driver: c.driver, sandboxId: c.sandboxId, sessionId: c.sessionId });
    };
    this.sessions = new SessionManager({
      idleTimeoutMs: options.sessionIdleTimeoutMs,
      max: options.maxSessions,
      logger: this.logger,
      onChange: (n) => metrics.sessions(n),
      onSandboxChange: onSandbox,
    });
    if (options.spareSandbox && options.defaultDriver === 'bwrap') {
      this.spare = new SpareSandbox({
        // The very path a call's own fresh sandbox takes, under the session id `spare` until a call takes it.
        make: (spec) => new Session('spare', spec, () => this.options.drivers.get(spec.driver), true, onSandbox).sandbox(),
        discard: async (sb) => {
          await sb.dispose();
          onSandbox({ driver: 'bwrap', delta: -1, sandboxId: sb.id, sessionId: 'spare' });
        },
        // Three: a call takes one and the next is made at once; calls that come
        // back to back then each find a spare made and pre-started about two
        // calls earlier, whose bwrap is ready (with one or two, it is often
        // still setting up).
        size: 3,
        logger: this.logger,
      });
      // After the constructor: the drivers were probed before the executor was made.
      setImmediate(() => this.prepareSpare());
    }
  }

  /** Tops the spares up for the default fresh-sandbox spec, unless draining. */
  private prepareSpare(): void {
    if (!this.spare || this.draining) return;
    try {
      if (!this.options.drivers.available().includes('bwrap')) return;
      this.spare.prepare(this.sessionSpec('bwrap', {}));
    } catch (err) {
      this.logger.warn({ err: describeError(err) }, 'making a spare sandbox failed');
    }
  }

  /** Tool names this runner offers to a source (sent in the handshake for the control plane). */
  toolNames(source: CallSource = 'control-plane'): string[] {
    return [...this.toolsFor(source).keys()];
  }

  private toolsFor(source: CallSource): Map<string, ToolDefinition<any>> {
    return this.otherTools.get(source) ?? this.tools;
  }

  get inFlight(): number {
    return this.active;
  }

  /** Refuses new calls from now on (SIGTERM). */
  startDraining(): void {
    this.draining = true;
    // No call will take the spare any more.
    void this.spare?.dispose().catch((err: unknown) => this.logger.warn({ err: describeError(err) }, 'removing the spare sandbox failed'));
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Cancels a running call; false when it is not running here. */
  cancel(callId: string): boolean {
    const c = this.running.get(callId);
    if (!c) return false;
    c.abort(new RunnerError('cancelled', 'the call was cancelled'));
    return true;
  }

  /** Cancels every running call (the drain deadline passed). */
  cancelAll(reason: string): void {
    for (const c of this.running.values()) c.abort(new RunnerError('cancelled', reason));
  }

  /** Resolves once no call is running, or when `signal` aborts. */
  async idle(signal?: AbortSignal): Promise<void> {
    while (this.active > 0 && !signal?.aborted) {
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Opens a session (a sandbox living across calls). */
  openSession(id: string, req: OpenSessionRequest = {}): Session {
    const existing = this.sessions.get(id);
    if (existing) {
      // A redelivered open: the session keeps the credentials it was opened with.
      req.onClose?.();
      return existing;
    }
    try {
      const driver = req.driver ?? this.options.defaultDriver;
      if (driver === 'isolate') {
        throw new RunnerError('invalid_input', 'driver: sessions need a process driver (bwrap or docker); isolate calls need no session');
      }
      const decision = this.options.policy?.check({
        driver,
        image: req.image ?? this.options.defaultImage,
        ...(req.limits ? { limits: req.limits } : {}),
        ...(req.network ? { network: req.network } : {}),
        ...(req.vaultRefs?.length ? { vaultRefs: req.vaultRefs } : {}),
        labels: Object.entries(req.labels ?? {}).map(([k, v]) => `${k}=${v}`),
      });
      if (decision && !decision.ok) {
        (this.options.metrics ?? noMetrics).refused('policy_denied');
        throw new RunnerError('policy_denied', `${decision.message} (rule ${decision.rule})`);
      }
      const spec = this.sessionSpec(driver, req);
      if (decision?.ok) spec.limits = capLimits(spec.limits, decision.limits);
      if (req.env) Object.assign(spec.env, req.env);
      if (req.files?.length) spec.files = req.files;
      const credentialEnv = Object.keys(req.env ?? {});
      if (req.onClose || credentialEnv.length) {
        spec.onDispose = () => {
          // The strings cannot be zeroed; dropping the references is what JS allows. The bytes are wiped by onClose.
          for (const k of credentialEnv) delete spec.env[k];
          delete spec.files;
          req.onClose?.();
        };
      }
      return this.sessions.open(id, spec, () => this.options.drivers.get(driver));
    } catch (err) {
      req.onClose?.();
      throw err;
    }
  }

  closeSession(id: string): Promise<boolean> {
    return this.sessions.close(id);
  }

  private sessionSpec(driver: Exclude<DriverName, 'isolate'>, req: OpenSessionRequest): SessionSpec {
    // No network unless asked; an allowlist goes through the runner's egress proxy, the only way out.
    const network: NetworkSpec = req.network?.allow.length
      ? { mode: 'proxy', proxyUrl: 'http://127.0.0.1:3128', allow: req.network.allow }
      : { mode: 'none' };
    return {
      driver,
      image: req.image ?? this.options.defaultImage,
      limits: capLimits(this.options.limits, req.limits),
      network,
      env: baseEnv(),
      labels: req.labels ?? {},
      ...(req.mounts?.length ? { mounts: req.mounts } : {}),
    };
  }

  /** Runs one tool call to its outcome. */
  async dispatch(req: DispatchRequest): Promise<DispatchResult> {
    const started = performance.now();
    const metrics = this.options.metrics ?? noMetrics;
    const redaction = this.options.redaction ?? noRedaction;
    const done = (o: ToolOutcome): DispatchResult => {
      const result = { ...o, content: redactContent(o.content, (t) => redaction.redact(t)), durationMs: performance.now() - started };
      metrics.callEnded(req.name, req.source, o.status, result.durationMs);
      return result;
    };
    metrics.callStarted(req.name, req.source);
    // A refusal before anything runs: counted, audited with its reason, answered as an is_error result.
    const refuse = (reason: string, message: string, extra: Record<string, unknown> = {}): DispatchResult => {
      metrics.refused(reason);
      this.options.audit?.append({ type: 'call.refused', callId: req.callId, tool: req.name, source: req.source, reason, ...extra });
      return done(failure(message));
    };
    const tool = this.toolsFor(req.source).get(req.name);
    if (!tool) {
      return refuse('unknown_tool', `unknown tool ${JSON.stringify(req.name)}; this runner offers: ${this.toolNames(req.source).join(', ')}`);
    }
    const parsed = tool.inputSchema.safeParse(req.input);
    if (!parsed.success) {
      return refuse('invalid_input', `invalid input: ${describeIssues(parsed.error, 'input')}`);
    }
    let session: Session | undefined;
    if (req.sessionId) {
      session = this.sessions.get(req.sessionId);
      if (!session) {
        return refuse('unknown_session', `sessionId: no open session ${JSON.stringify(req.sessionId)} on this runner; open one first or drop sessionId`);
      }
      if (req.network) {
        return refuse('invalid_input', 'network: a call in a session reaches what the session was opened with; drop network, or open a session with it');
      }
    }
    const decision = this.options.policy?.check({
      tool: req.name,
      inFlight: this.active,
      ...(req.vaultRefs?.length ? { vaultRefs: req.vaultRefs } : {}),
      ...(session ? {} : { driver: this.options.defaultDriver, image: this.options.defaultImage }),
      ...(req.network ? { network: req.network } : {}),
    });
    if (decision && !decision.ok) {
      req.span?.child('policy', { 'policy.rule': decision.rule }).fail(new Error(decision.message)).end('error');
      return refuse('policy_denied', `policy_denied: ${decision.message} (rule ${decision.rule})`, { rule: decision.rule });
    }
    req.span?.child('policy').end('ok');
    if (this.draining) {
      return refuse('draining', 'the runner is shutting down and takes no new calls; send the call to another runner');
    }
    const timeoutMs = Math.min(req.timeoutMs ?? this.options.defaultTimeoutMs, this.options.maxTimeoutMs);
    const controller = new AbortController();
    const deadline = AbortSignal.timeout(timeoutMs);
    const onDeadline = () => controller.abort(new RunnerError('timed_out', `the call ran longer than its ${timeoutMs} ms deadline`));
    const onUpstream = () => controller.abort(req.signal?.reason ?? new RunnerError('cancelled', 'the call was cancelled'));
    deadline.addEventListener('abort', onDeadline, { once: true });
    req.signal?.addEventListener('abort', onUpstream, { once: true });
    this.running.set(req.callId, controller);
    if (session && req.files?.length) {
      return done(failure('credentials: file credentials are placed when a sandbox is made; send them without sessionId, or inject them as env'));
    }
    const ephemeralSpec = this.sessionSpec(this.options.defaultDriver, req.network ? { network: req.network } : {});
    if (req.files?.length) ephemeralSpec.files = req.files;
    if (decision?.ok) ephemeralSpec.limits = capLimits(ephemeralSpec.limits, decision.limits);
    // The spare is taken only when the tool first asks for a sandbox: a call
    // that never does (javascript on the isolate) leaves it for the next.
    const takeSpare = (): Promise<Sandbox> | undefined => {
      const taken = this.spare?.take(ephemeralSpec);
      if (!taken) return undefined;
      // A pre-started spare makes this call's own run one exec, so the next spare
      // is made now rather than after the call: calls that come back to back
      // then find one ready instead of waiting for a whole sandbox setup.
      this.prepareSpare();
      return taken;
    };
    const ephemeral = session ? undefined : this.sessions.ephemeral(ephemeralSpec, () => this.options.drivers.get(this.options.defaultDriver), takeSpare);
    const target = session ?? ephemeral!;
    target.active++;
    const streams = { stdout: redaction.stream(), stderr: redaction.stream() };
    let streamSpan: CallSpan | undefined;
    let streamed = 0;
    let outcome: ToolOutcome;
    let acquired = false;
    try {
      await this.acquire(controller.signal);
      acquired = true;
      if (controller.signal.aborted) throw controller.signal.reason;
      const ctx: ToolContext = {
        callId: req.callId,
        signal: controller.signal,
        timeoutMs,
        logger: this.logger.child({ callId: req.callId, ...(req.sessionId ? { sessionId: req.sessionId } : {}) }),
        emit: async (stream, chunk) => {
          const safe = streams[stream].push(chunk);
          if (safe.length === 0) return;
          streamSpan ??= req.span?.child('stream');
          streamed += safe.length;
          metrics.bytesStreamed(safe.length);
          await req.onOutput?.(stream, safe);
        },
        sandbox: () =>
          target.hasSandbox || !req.span
            ? target.sandbox(controller.signal)
            : // Also when a spare made ahead is handed over: the span shows the call got its sandbox, and how fast.
              req.span.run(
                'sandbox.create',
                async (span) => {
                  const sandbox = await target.sandbox(controller.signal);
                  span.setAttributes({ 'sandbox.spare': target.tookSpare });
                  return sandbox;
                },
                { 'sandbox.driver': target.spec.driver },
              ),
        isolates: this.options.isolates,
        session: target.state,
        env: req.env ?? {},
      };
      const execute = req.span?.child('execute', { 'tool.name': req.name });
      try {
        outcome = await runUntilAborted(tool.run(parsed.data, ctx), controller.signal);
        execute?.setAttributes({ 'tool.status': outcome.status }).end(outcome.isError ? 'error' : 'ok');
      } catch (err) {
        execute?.fail(err).end('error');
        throw err;
      }
    } catch (err) {
      outcome = errorOutcome(err, controller.signal);
      if (outcome.status === 'failed') this.logger.warn({ callId: req.callId, err: describeError(err) }, 'tool call failed');
    } finally {
      for (const stream of ['stdout', 'stderr'] as const) {
        const tail = streams[stream].end();
        if (tail.length) await Promise.resolve(req.onOutput?.(stream, tail)).catch(() => undefined);
      }
      streamSpan?.setAttributes({ 'stream.bytes': streamed }).end('ok');
      target.active--;
      target.lastUsed = Date.now();
      this.running.delete(req.callId);
      deadline.removeEventListener('abort', onDeadline);
      req.signal?.removeEventListener('abort', onUpstream);
      if (acquired) this.release();
      if (ephemeral) {
        // The call's processes are gone by now (a run settles only once its whole
        // tree has exited), so removing the sandbox need not hold the result back:
        // it finishes in the background and shutdown() waits for it. A sandbox
        // that held credential files is removed before the result, so the files
        // never outlive the call.
        const usedSandbox = ephemeral.hasSandbox;
        const disposal = this.disposeInBackground(ephemeral);
        if (req.files?.length) await disposal;
        // A call that had a sandbox (a spare, or one made because none was
        // ready) tops the spares up after it, so making them never competes
        // with its own run; a call without one took nothing.
        if (usedSandbox) this.prepareSpare();
      }
    }
    // A deadline or cancel wins over whatever the tool made of it.
    if (controller.signal.aborted && outcome.status === 'completed') outcome = errorOutcome(controller.signal.reason, controller.signal);
    return done(outcome);
  }

  /** Disposes a call's fresh sandbox, tracked until done; a failure is logged, never thrown. */
  private disposeInBackground(session: Session): Promise<void> {
    const p = session
      .dispose()
      .catch((err: unknown) => this.logger.warn({ err: describeError(err), sessionId: session.id }, 'disposing a sandbox failed'))
      .finally(() => this.disposals.delete(p));
    this.disposals.add(p);
    return p;
  }

  /** Resolves once every fresh sandbox of a finished call is removed. */
  async disposed(): Promise<void> {
    while (this.disposals.size > 0) await Promise.all([...this.disposals]);
  }

  private async acquire(signal: AbortSignal): Promise<void> {
    while (this.active >= this.options.maxConcurrent) {
      if (signal.aborted) throw signal.reason;
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = () => {
          const i = this.waiting.indexOf(wake);
          if (i >= 0) this.waiting.splice(i, 1);
          resolve();
        };
        this.waiting.push(wake);
        signal.addEventListener('abort', onAbort, { once: true });
      });
    }
    this.active++;
  }

  private release(): void {
    this.active--;
    this.waiting.shift()?.();
  }

  /** Closes every session and its sandbox, and waits for the fresh sandboxes still being removed. */
  async shutdown(): Promise<void> {
    this.cancelAll('the runner is stopping');
    await Promise.all([
      this.sessions.closeAll(),
      this.disposed(),
      this.spare?.dispose().catch((err: unknown) => this.logger.warn({ err: describeError(err) }, 'removing the spare sandbox failed')),
    ]);
  }
}

/** Resolves with the tool's outcome, or rejects shortly after an abort if the tool does not return. */
function runUntilAborted(p: Promise<ToolOutcome>, signal: AbortSignal): Promise<ToolOutcome> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    // A tool gets a moment to kill its processes and say what it saw; then the call ends regardless.
    const onAbort = () => (timer = setTimeout(() => reject(signal.reason), 2000));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    });
  });
}

function failure(message: string, status: CallStatus = 'failed'): ToolOutcome {
  return { status, isError: true, content: message };
}

function errorOutcome(err: unknown, signal: AbortSignal): ToolOutcome {
  const reason = signal.aborted ? signal.reason : err;
  if (isRunnerError(reason, 'timed_out')) return failure(reason.message, 'timed_out');
  if (isRunnerError(reason, 'cancelled')) return failure(reason.message, 'cancelled');
  if (isRunnerError(err)) return failure(err.message);
  return failure(`the runner failed to run the tool: ${describeError(err)}`);
}

function redactContent(content: ToolResultContent, redact: (t: string) => string): ToolResultContent {
  if (typeof content === 'string') return redact(content);
  return content.map((b) => ({ ...b, text: redact(b.text) }));
}

/** Narrows the configured limits by what a request asks; a request can only lower them. */
export function capLimits(base: SandboxLimits, req?: LimitsRequest): SandboxLimits {
  const out = { ...DEFAULT_LIMITS, ...base };
  if (!req) return out;
  for (const k of Object.keys(req) as (keyof LimitsRequest)[]) {
    const v = req[k];
    if (v !== undefined) out[k] = Math.min(out[k], v);
  }
  return out;
}

/** The only environment sandboxed processes get (nothing is inherited from the runner). */
export function baseEnv(): Record<string, string> {
  return {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/workspace',
    LANG: 'C.UTF-8',
    TERM: 'dumb',
  };
}

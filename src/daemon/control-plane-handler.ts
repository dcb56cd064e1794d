import path from 'node:path';
import { mkdir, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { encodeOutputFrame, type ControlMessage, type MessageOf, type ToolResultMessage } from '../protocol/index.js';
import type { CallJournal } from '../connection/call-journal.js';
import type { RunnerConnection } from '../connection/runner-connection.js';
import type { Executor } from '../executor/executor.js';
import { checkpointWorkspace, restoreWorkspace, storageName } from '../tools/files/workspace-checkpoint.js';
import { WorkspaceFs } from '../tools/workspace-path.js';
import type { AuditSink } from '../executor/executor-options.js';
import { describeError, isRunnerError, RunnerError } from '../util/errors.js';
import type { CredentialSet } from '../credentials/index.js';
import type { RequestVerifier } from '../signing/index.js';
import type { CallSpan, Tracing } from '../tracing/index.js';
import { noopLogger, type Logger } from '../util/logger.js';

/** Longest wait for queued output before a call's result is journaled and sent. */
const OUTPUT_FLUSH_MAX_MS = 1000;

export interface ControlPlaneHandlerOptions {
  connection: () => RunnerConnection;
  journal: CallJournal;
  executor: Executor;
  /** Where session checkpoints (tar of the workspace) are kept. */
  checkpointDir: string;
  logger?: Logger;
  audit?: AuditSink;
  /** Checks a request's signature before it acts; refuses unsigned, stale, replayed or misdirected requests. */
  verifier?: Pick<RequestVerifier, 'verify'>;
  /** Opens the sealed credentials and vault references of a call or a session (and feeds the redactor). */
  openCredentials?: (credentials: NonNullable<ToolCallMessage['credentials']>, binding: { callId: string } | { sessionId: string }) => Promise<CredentialSet>;
  tracing?: Tracing;
  /** Counts a request refused before it ran (metrics), by reason. */
  onRefused?: (reason: string) => void;
  /** False when calls must be refused (the audit log cannot be written: fail closed). */
  accepting?: () => { ok: true } | { ok: false; reason: string };
}

type ToolCallMessage = MessageOf<ControlMessage, 'tool.call'>;

/** How long a call runs before the runner tells the control plane it has it (when its result has not gone out by then). */
const ACCEPTED_AFTER_MS = 20;

/**
 * Serves the control plane's messages: runs tool calls exactly once through
 * the executor (the call journal remembers every id), streams their output as
 * binary frames, keeps each result in the outbox until acknowledged, and
 * handles sessions, cancels and acks.
 */
export class ControlPlaneHandler {
  private readonly logger: Logger;
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Call ids being handled right now. */
  private readonly claimed = new Set<string>();

  constructor(private readonly options: ControlPlaneHandlerOptions) {
    this.logger = options.logger ?? noopLogger;
  }

  /** After each handshake: forget what the control plane holds, resend the rest. */
  async onConnected(known: string[]): Promise<void> {
    if (known.length) this.options.journal.ack(known);
    for (const result of this.options.journal.pending()) {
      await this.options.connection().send(result);
    }
  }

  onMessage(message: ControlMessage): void {
    const work = this.serve(message).catch((err: unknown) =>
      this.logger.error({ type: message.type, err: describeError(err) }, 'handling a control-plane message failed'),
    );
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
  }

  /**
   * Resolves once every message being handled is done (results journaled and
   * sent), or after `timeoutMs`: the daemon waits for this before it closes the
   * connection, so a drained call's result goes out now rather than at the next start.
   */
  async settle(timeoutMs: number): Promise<void> {
    const deadline = AbortSignal.timeout(timeoutMs);
    while (this.inFlight.size > 0 && !deadline.aborted) {
      await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => deadline.addEventListener('abort', r, { once: true }))]);
    }
  }

  private async serve(message: ControlMessage): Promise<void> {
    if (message.type === 'ack') {
      this.options.journal.ack(message.ids);
      return;
    }
    if (message.type === 'error') {
      this.logger.warn({ code: message.code, ref: message.ref }, `the control plane reported an error: ${message.message}`);
      return;
    }
    if (message.type === 'hello' || message.type === 'welcome') {
      await this.send({ type: 'error', code: 'bad_message', message: `type: ${message.type} is not expected after the handshake`, ref: message.id });
      return;
    }
    const span = message.type === 'tool.call' ? this.options.tracing?.startCallSpan('tool.call', message.traceparent, { 'tool.name': message.toolUse.name, 'call.id': message.toolUse.id, 'call.source': 'control-plane' }) : undefined;
    if (!(await this.verify(message, span))) {
      span?.end('error');
      return;
    }
    switch (message.type) {
      case 'tool.call':
        await this.handleToolCall(message, span);
        return;
      case 'tool.cancel':
        if (this.options.executor.cancel(message.callId)) this.options.audit?.append({ type: 'call.cancel', callId: message.callId });
        return;
      default:
        await this.handleSession(message);
    }
  }

  /** Signature, target runner, freshness and nonce: a refusal is answered, audited and logged. */
  private async verify(message: Exclude<ControlMessage, { type: 'ack' | 'hello' | 'welcome' | 'error' }>, span?: CallSpan): Promise<boolean> {
    const verifier = this.options.verifier;
    if (!verifier) return true;
    const step = span?.child('verify');
    let refusal: { code: string; reason: string; message: string } | undefined;
    try {
      const r = await verifier.verify(message);
      if (!r.ok) refusal = r;
    } catch (err) {
      refusal = { code: 'signature_invalid', reason: 'io', message: `the runner could not record the request nonce (${describeError(err)}); the request was refused` };
    }
    if (!refusal) {
      step?.end('ok');
      return true;
    }
    step?.fail(new Error(refusal.message)).end('error');
    this.options.onRefused?.(`signature_${refusal.reason}`);
    const callId = message.type === 'tool.call' ? message.toolUse.id : message.type === 'tool.cancel' ? message.callId : undefined;
    this.logger.warn({ type: message.type, callId, reason: refusal.reason }, `refused a request: ${refusal.message}`);
    this.options.audit?.append({ type: 'request.refused', messageType: message.type, ...(callId ? { callId } : {}), code: refusal.code, reason: refusal.reason, detail: refusal.message });
    await this.send({ type: 'error', code: refusal.code, message: refusal.message, ref: message.id });
    return false;
  }

  private send(message: Parameters<RunnerConnection['send']>[0]): Promise<boolean> {
    return this.options.connection().send(message);
  }

  private async handleToolCall(msg: ToolCallMessage, span?: CallSpan): Promise<void> {
    const callId = msg.toolUse.id;
    const journal = this.options.journal;
    // Two deliveries of one call can arrive together (a send and a redelivery):
    // the claim is taken before any await, so only one of them ever runs it.
    if (this.claimed.has(callId)) {
      void this.send({ type: 'tool.accepted', callId });
      span?.end();
      return;
    }
    this.claimed.add(callId);
    try {
      await this.runToolCall(msg, span);
    } finally {
      this.claimed.delete(callId);
    }
  }

  private async runToolCall(msg: ToolCallMessage, span?: CallSpan): Promise<void> {
    const callId = msg.toolUse.id;
    const journal = this.options.journal;
    const seen = await journal.lookup(callId);
    if (seen.state === 'done') {
      // A redelivered call: never run twice, answer with the stored result.
      this.logger.info({ callId }, 'call seen before; sending its stored result again');
      await this.send(seen.result);
      span?.end();
      return;
    }
    if (seen.state === 'running') {
      await this.send({ type: 'tool.accepted', callId });
      span?.end();
      return;
    }
    if (this.options.executor.isDraining) {
      // Not accepted and not journaled: the control plane sends it again once this runner (or another) is back.
      await this.send({ type: 'error', code: 'draining', message: 'the runner is shutting down and takes no new calls; the call was not run', ref: msg.id });
      span?.end();
      return;
    }
    const accepting = this.options.accepting?.() ?? { ok: true };
    if (!accepting.ok) {
      // Fail closed: nothing runs that cannot be recorded. Not journaled, so a later retry can run.
      this.logger.error({ callId }, `refused a call: ${accepting.reason}`);
      this.options.onRefused?.('audit');
      await this.send({ type: 'error', code: 'internal', message: `the runner takes no calls now: ${accepting.reason}`, ref: msg.id });
      span?.end('error');
      return;
    }
    journal.begin(callId);
    // Every line about this call carries its ids, so an operator can grep one call out of the log.
    const log = this.logger.child({ callId, ...(msg.sessionId ? { sessionId: msg.sessionId } : {}) });
    log.debug({ tool: msg.toolUse.name, traceId: span?.traceId }, 'call accepted');
    this.options.audit?.append({ type: 'call.received', callId, tool: msg.toolUse.name, sessionId: msg.sessionId, traceId: span?.traceId });
    // `tool.accepted` only stops the control plane from sending the call again
    // after a reconnect, which the result does as well (docs/protocol.md). Sent
    // once the call has run for ACCEPTED_AFTER_MS, and not at all when the result
    // goes first: for a short call it was one more frame, and a wake-up of the
    // control plane in the middle of the call's round trip. A redelivery inside
    // that window finds the call in the journal and is answered `tool.accepted`.
    let acceptedTimer: NodeJS.Timeout | undefined = setTimeout(() => {
      acceptedTimer = undefined;
      void this.send({ type: 'tool.accepted', callId, ...(span ? { traceId: span.traceId } : {}) });
    }, ACCEPTED_AFTER_MS);
    // The entry just written may have been the one that found the disk full: then nothing runs.
    const recorded = this.options.accepting?.() ?? { ok: true };
    const seq = { n: 0 };
    const conn = this.options.connection();
    let credentials: CredentialSet | undefined;
    let result: Awaited<ReturnType<Executor['dispatch']>>;
    try {
      if (!recorded.ok) {
        this.options.onRefused?.('audit');
        throw new RunnerError('audit_failed', `the runner did not run the call: ${recorded.reason}`);
      }
      if (msg.credentials?.length) {
        if (!this.options.openCredentials) throw new RunnerError('credential_invalid', 'this runner cannot open credentials');
        const step = span?.child('credentials', { 'credentials.count': msg.credentials.length });
        try {
          credentials = await this.options.openCredentials(msg.credentials, { callId });
          step?.end('ok');
        } catch (err) {
          step?.fail(err).end('error');
          throw err;
        }
        // By name only: values never reach the audit log.
        this.options.audit?.append({ type: 'credential.used', callId, names: credentials.names });
      }
      const vaultRefs = (msg.credentials ?? []).flatMap((c) => ('vault' in c ? [c.vault] : []));
      result = await this.options.executor.dispatch({
        callId,
        source: 'control-plane',
        name: msg.toolUse.name,
        input: msg.toolUse.input,
        ...(msg.sessionId ? { sessionId: msg.sessionId } : {}),
        ...(msg.timeoutMs ? { timeoutMs: msg.timeoutMs } : {}),
        ...(credentials ? { env: credentials.env(), files: credentials.files() } : {}),
        ...(vaultRefs.length ? { vaultRefs } : {}),
        ...(msg.network ? { network: msg.network } : {}),
        ...(span ? { span } : {}),
        onOutput: async (stream, chunk) => {
          // Output is best effort while disconnected; the result carries what matters.
          await conn.sendBinary(encodeOutputFrame({ callId, seq: seq.n++, stream, data: chunk }));
        },
      });
    } catch (err) {
      // A credential that cannot be opened fails the call closed: nothing ran.
      if (!isRunnerError(err)) this.logger.error({ callId, err }, 'the call failed before it ran');
      const message = isRunnerError(err) ? err.message : `the runner failed before running the call: ${describeError(err)}`;
      result = { status: 'failed', isError: true, content: message, durationMs: 0 };
    } finally {
      credentials?.dispose();
      clearTimeout(acceptedTimer);
    }
    span?.setAttributes({ 'call.status': result.status }).end(result.isError ? 'error' : 'ok');
    // Journaling and sending a result that carries MBs of output blocks this
    // loop for a while; output frames still queued here would wait behind it,
    // although they go out first on the socket anyway. So they leave first.
    // The result is not held back by this (it follows them on the same
    // socket), and the wait is bounded in case the socket stalls.
    const flushing = conn.outputFlushed(OUTPUT_FLUSH_MAX_MS);
    if (flushing) await flushing;
    const message: ToolResultMessage = {
      v: 1,
      id: `result-${callId}`,
      type: 'tool.result',
      callId,
      status: result.status,
      result: { type: 'tool_result', tool_use_id: callId, content: result.content, is_error: result.isError },
      durationMs: Math.round(result.durationMs * 1000) / 1000,
      ...(span ? { traceId: span.traceId } : {}),
    };
    // Serialised once for the journal and the wire (it can carry MBs of output).
    const json = JSON.stringify(message);
    journal.complete(message, json);
    // Sent while the journal syncs: written already, so a crash of this process
    // keeps it; see CallJournal.complete for why a power loss adds no new loss.
    const synced = journal.sync();
    const sent = this.options.connection().sendSerialized(json);
    log.info({ tool: msg.toolUse.name, status: result.status, durationMs: message.durationMs }, 'call finished');
    this.options.audit?.append({ type: 'call.result', callId, tool: msg.toolUse.name, status: result.status, durationMs: message.durationMs });
    await Promise.all([sent, synced]);
  }

  private async handleSession(
    msg: MessageOf<ControlMessage, 'session.open' | 'session.close' | 'session.checkpoint' | 'session.restore'>,
  ): Promise<void> {
    const ex = this.options.executor;
    const reply = (ok: boolean, extra: { checkpointId?: string; error?: { code: string; message: string } } = {}) =>
      this.send({ type: 'session.result', ref: msg.id, sessionId: msg.sessionId, ok, ...extra });
    try {
      if (msg.type === 'session.open') {
        const credentials = await this.openSessionCredentials(msg);
        const vaultRefs = (msg.credentials ?? []).flatMap((c) => ('vault' in c ? [c.vault] : []));
        // The session owns the set from here: openSession disposes it when it refuses, the session at close.
        ex.openSession(msg.sessionId, {
          ...(msg.driver ? { driver: msg.driver } : {}),
          ...(msg.image ? { image: msg.image } : {}),
          ...(msg.limits ? { limits: msg.limits } : {}),
          ...(msg.network ? { network: msg.network } : {}),
          ...(credentials ? { env: credentials.env(), files: credentials.files(), onClose: () => credentials.dispose() } : {}),
          ...(vaultRefs.length ? { vaultRefs } : {}),
        });
        this.options.audit?.append({ type: 'session.open', sessionId: msg.sessionId, driver: msg.driver });
        // By name only: values never reach the audit log.
        if (credentials) this.options.audit?.append({ type: 'credential.used', sessionId: msg.sessionId, names: credentials.names });
        await reply(true);
      } else if (msg.type === 'session.close') {
        const closed = await ex.closeSession(msg.sessionId);
        this.options.audit?.append({ type: 'session.close', sessionId: msg.sessionId });
        await rm(path.join(this.options.checkpointDir, storageName(msg.sessionId)), { recursive: true, force: true });
        await (closed ? reply(true) : reply(false, { error: { code: 'unknown_session', message: `no open session ${msg.sessionId}` } }));
      } else if (msg.type === 'session.checkpoint') {
        const checkpointId = await this.checkpoint(msg.sessionId);
        await reply(true, { checkpointId });
      } else {
        await this.restore(msg.sessionId, msg.checkpointId);
        await reply(true, { checkpointId: msg.checkpointId });
      }
    } catch (err) {
      const code = isRunnerError(err) ? err.code : 'internal';
      await reply(false, { error: { code, message: describeError(err) } });
    }
  }

  /** Opens a session's credentials, bound to its id; fails the open closed when one cannot be opened. */
  private async openSessionCredentials(msg: MessageOf<ControlMessage, 'session.open'>): Promise<CredentialSet | undefined> {
    if (!msg.credentials?.length) return undefined;
    if (this.options.executor.sessions.get(msg.sessionId)) return undefined; // a redelivered open keeps what it had
    if (!this.options.openCredentials) throw new RunnerError('credential_invalid', 'this runner cannot open credentials');
    return this.options.openCredentials(msg.credentials, { sessionId: msg.sessionId });
  }

  private sessionOrThrow(id: string) {
    const s = this.options.executor.sessions.get(id);
    if (!s) throw Object.assign(new Error(`no open session ${id}; open it first`), {});
    return s;
  }

  /** A tar of the session's workspace, kept on the runner. */
  private async checkpoint(sessionId: string): Promise<string> {
    const sandbox = await this.sessionOrThrow(sessionId).sandbox();
    const dir = path.join(this.options.checkpointDir, storageName(sessionId));
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const id = `ckpt_${randomBytes(8).toString('hex')}`;
    await checkpointWorkspace(await WorkspaceFs.open(sandbox.workspaceDir), path.join(dir, `${id}.tar`), { maxBytes: sandbox.limits.workspaceBytes });
    return id;
  }

  private async restore(sessionId: string, checkpointId: string): Promise<void> {
    const sandbox = await this.sessionOrThrow(sessionId).sandbox();
    const file = path.join(this.options.checkpointDir, storageName(sessionId), `${storageName(checkpointId)}.tar`);
    await restoreWorkspace(await WorkspaceFs.open(sandbox.workspaceDir), file, { maxBytes: sandbox.limits.workspaceBytes });
  }
}

import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { TOOL_INPUT_SCHEMAS, ToolCallSchema, ToolUseSchema, describeIssues } from '../protocol/index.js';
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { AuditStore } from './audit-store.js';
import { publicCall, type CallRecord } from './call-store.js';
import { CredentialsBodySchema } from './credentials.js';
import { HttpError, readBody, requireAdmin, sendError, sendJson } from './http-util.js';
import { PairBodySchema, PairingTokenBodySchema, REFUSAL_MESSAGES, type Pairing } from './pairing.js';
import type { RunnerHub } from './runner-hub.js';
import type { RunnerRecord, RunnerRegistry } from './runner-registry.js';
import { SseStream } from './sse-stream.js';
import { SessionBodySchema, type SessionOutcome, type Sessions } from './sessions.js';
import type { ToolCalls } from './tool-calls.js';
import type { TraceStore } from './trace-store.js';

/** Body of `POST /v1/runners/{runnerId}/tool-calls`. */
export const ToolCallBodySchema = z
  .object({
    id: ToolUseSchema.shape.id.optional(),
    name: ToolUseSchema.shape.name,
    input: ToolUseSchema.shape.input,
    sessionId: ToolCallSchema.shape.sessionId,
    timeoutMs: ToolCallSchema.shape.timeoutMs,
    credentials: CredentialsBodySchema,
    network: ToolCallSchema.shape.network,
  })
  .strict();

export interface HttpApiOptions {
  adminToken: string;
  signingPublicKey: string;
  /** The runners' WebSocket URL as a runner that reached `req` should dial it. */
  wsUrlFor(req: IncomingMessage): string;
  pairing: Pairing;
  registry: RunnerRegistry;
  hub: RunnerHub;
  calls: ToolCalls;
  sessions: Sessions;
  traces: TraceStore;
  audit: AuditStore;
  /** Bytes of events an SSE client may leave unread (see SseStream). */
  sseMaxBufferedBytes?: number;
  /** Resolves once the control plane's own ended spans are stored. */
  flushSpans(): Promise<void>;
  logger: Logger;
}

type Handler = (req: IncomingMessage, res: ServerResponse, params: string[], url: URL) => Promise<void>;
interface Route {
  method: string;
  pattern: RegExp;
  admin: boolean;
  handler: Handler;
}

const SEG = '([^/]+)';

/** Session errors from a runner, mapped to the HTTP status a client should see. */
function sessionStatus(code: string): number {
  if (code === 'unknown_session') return 404;
  if (code === 'policy_denied' || code === 'signature_invalid') return 403;
  if (code === 'invalid_input' || code === 'bad_message') return 400;
  if (code === 'runner_not_connected') return 409;
  if (code === 'busy' || code === 'draining' || code === 'runner_disconnected') return 503;
  if (code === 'runner_timeout') return 504;
  return 502;
}

/** The control plane's HTTP API (JSON); see docs/control-plane-api.md. */
export class HttpApi {
  readonly #o: HttpApiOptions;
  readonly #adminDigest: Buffer;
  readonly #routes: Route[];

  constructor(options: HttpApiOptions) {
    this.#o = options;
    this.#adminDigest = createHash('sha256').update(options.adminToken, 'utf8').digest();
    const r = (method: string, path: string, admin: boolean, handler: Handler): Route => ({
      method,
      pattern: new RegExp(`^${path.replaceAll(':p', SEG)}$`),
      admin,
      handler,
    });
    this.#routes = [
      r('GET', '/healthz', false, async (_q, res) => sendJson(res, 200, { ok: true })),
      r('POST', '/v1/pair', false, (q, s) => this.#pair(q, s)),
      r('POST', '/v1/pairing-tokens', true, (q, s) => this.#issueToken(q, s)),
      r('GET', '/v1/runners', true, async (_q, s) => sendJson(s, 200, this.#o.registry.list().map((x) => this.#runnerView(x)))),
      r('GET', '/v1/runners/:p/audit-checkpoints', true, (q, s, p) => this.#auditCheckpoints(s, p[0]!)),
      r('POST', '/v1/runners/:p/tool-calls', true, (q, s, p, u) => this.#submitCall(q, s, p[0]!, u)),
      r('POST', '/v1/runners/:p/sessions', true, (q, s, p) => this.#openSession(q, s, p[0]!)),
      r('DELETE', '/v1/sessions/:p', true, (q, s, p) => this.#closeSession(s, p[0]!)),
      r('GET', '/v1/tool-calls/:p', true, async (_q, s, p) => sendJson(s, 200, publicCall(this.#call(p[0]!)))),
      r('GET', '/v1/tool-calls/:p/events', true, async (_q, s, p) => this.#events(s, p[0]!)),
      r('POST', '/v1/tool-calls/:p/cancel', true, (_q, s, p) => this.#cancel(s, p[0]!)),
      r('GET', '/v1/traces/:p', true, (_q, s, p) => this.#trace(s, p[0]!)),
    ];
  }

  /** The `request` listener of the HTTP server. */
  handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.#route(req, res).catch((err: unknown) => {
      if (!(err instanceof HttpError)) {
        this.#o.logger.error({ err, method: req.method, url: req.url }, 'HTTP handler failed');
        err = new HttpError(500, 'internal', `the control plane failed: ${describeError(err)}; see its log`);
      }
      if (res.headersSent) res.destroy();
      else sendError(res, err as HttpError);
    });
  };

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://control-plane');
    let pathMatched = false;
    for (const route of this.#routes) {
      const m = route.pattern.exec(url.pathname);
      if (!m) continue;
      pathMatched = true;
      if (route.method !== req.method) continue;
      if (route.admin) requireAdmin(req, this.#adminDigest);
      const params = m.slice(1).map((p) => decodeURIComponent(p));
      return route.handler(req, res, params, url);
    }
    if (pathMatched) throw new HttpError(405, 'method_not_allowed', `${req.method} is not allowed on ${url.pathname}; see docs/control-plane-api.md`);
    throw new HttpError(404, 'not_found', `no endpoint ${url.pathname}; see docs/control-plane-api.md`);
  }

  async #pair(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, PairBodySchema);
    const outcome = await this.#o.pairing.redeem(body);
    if (!outcome.ok) {
      this.#o.logger.warn({ reason: outcome.reason, runnerName: body.name }, 'pairing refused');
      sendJson(res, 401, { error: { code: 'pairing_token_invalid', reason: outcome.reason, message: REFUSAL_MESSAGES[outcome.reason] } });
      return;
    }
    this.#o.logger.info({ runnerId: outcome.runner.id, runnerName: outcome.runner.name }, 'runner paired');
    sendJson(res, 201, {
      runnerId: outcome.runner.id,
      controlPlaneSigningKey: this.#o.signingPublicKey,
      wsUrl: this.#o.wsUrlFor(req),
    });
  }

  async #issueToken(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, PairingTokenBodySchema);
    sendJson(res, 201, await this.#o.pairing.issue(body));
  }

  #runnerView(r: RunnerRecord) {
    return {
      id: r.id,
      name: r.name,
      labels: r.labels,
      connected: this.#o.hub.isConnected(r.id),
      lastSeenAt: r.lastSeenAt,
      version: r.version,
      capabilities: r.capabilities,
    };
  }

  #runner(id: string): RunnerRecord {
    const runner = this.#o.registry.get(id);
    if (!runner) throw new HttpError(404, 'unknown_runner', `no runner ${id}; list runners with GET /v1/runners`);
    return runner;
  }

  #connected(runner: RunnerRecord): void {
    if (!this.#o.hub.isConnected(runner.id)) {
      throw new HttpError(409, 'runner_not_connected', `runner ${runner.id} (${runner.name}) is not connected; start it and try again`);
    }
  }

  #call(id: string): CallRecord {
    const record = this.#o.calls.get(id);
    if (!record) throw new HttpError(404, 'unknown_call', `no tool call ${id}`);
    return record;
  }

  async #auditCheckpoints(res: ServerResponse, runnerId: string): Promise<void> {
    this.#runner(runnerId);
    sendJson(res, 200, await this.#o.audit.list(runnerId));
  }

  async #submitCall(req: IncomingMessage, res: ServerResponse, runnerId: string, url: URL): Promise<void> {
    const body = await readBody(req, ToolCallBodySchema);
    const runner = this.#runner(runnerId);
    const wait = url.searchParams.get('wait') !== 'false';
    const id = body.id ?? `toolu_${randomBytes(12).toString('hex')}`;
    const existing = this.#o.calls.get(id);
    if (existing) {
      if (existing.runnerId !== runnerId || existing.name !== body.name) {
        throw new HttpError(409, 'call_id_conflict', `call id ${id} was already used for another call; use a new id`);
      }
      return this.#respondCall(req, res, existing, wait, this.#o.calls.saved(id));
    }
    this.#connected(runner);
    const tools = runner.capabilities?.tools ?? [];
    if (!tools.includes(body.name)) {
      throw new HttpError(400, 'unknown_tool', `runner ${runner.id} has no tool "${body.name}"; its tools are: ${tools.join(', ') || 'none'}`);
    }
    const schema = TOOL_INPUT_SCHEMAS[body.name];
    if (schema) {
      const checked = schema.safeParse(body.input);
      if (!checked.success) throw new HttpError(400, 'invalid_input', describeIssues(checked.error, 'input'));
    }
    if (body.sessionId !== undefined && body.network) {
      throw new HttpError(400, 'invalid_input', 'network: a call in a session reaches what the session was opened with; drop network, or open a session with it');
    }
    if (body.sessionId !== undefined) {
      const session = this.#o.sessions.get(body.sessionId);
      if (!session || session.runnerId !== runnerId) {
        throw new HttpError(404, 'unknown_session', `no open session ${body.sessionId} on runner ${runnerId}; open one with POST /v1/runners/${runnerId}/sessions`);
      }
    }
    const { record, saved } = await this.#o.calls.submit(runnerId, {
      id,
      name: body.name,
      input: body.input,
      ...(body.sessionId !== undefined ? { sessionId: body.sessionId } : {}),
      ...(body.timeoutMs !== undefined ? { timeoutMs: body.timeoutMs } : {}),
      ...(body.credentials?.length ? { credentials: body.credentials, runnerBoxPublicKey: runner.boxPublicKey } : {}),
      ...(body.network ? { network: body.network } : {}),
      deferSave: wait,
    });
    return this.#respondCall(req, res, record, wait, saved);
  }

  /**
   * Without wait, answers 202 once the call's record is on disk. With wait,
   * answers with the call's end as soon as it is known, which for a short call
   * comes before the first write of its record lands: the end is written after
   * that write, and a crash in between loses no result, since the runner keeps
   * it until the control plane has written and acknowledged it.
   */
  async #respondCall(req: IncomingMessage, res: ServerResponse, record: CallRecord, wait: boolean, saved: Promise<void>): Promise<void> {
    if (!wait) {
      await saved;
      return sendJson(res, 202, { id: record.id });
    }
    // A write failure is the log's business here; the answer is the call's end.
    saved.catch((err: unknown) => this.#o.logger.error({ err, callId: record.id }, 'could not save a call record'));
    const gone = new AbortController();
    const onClose = () => {
      if (!res.writableEnded) gone.abort(new Error('client went away'));
    };
    res.on('close', onClose);
    try {
      sendJson(res, 200, await this.#o.calls.waitForEnd(record.id, gone.signal));
    } catch {
      // The client left; the call goes on and can be read with GET /v1/tool-calls/{id}.
    } finally {
      res.off('close', onClose);
    }
  }

  #events(res: ServerResponse, id: string): void {
    this.#call(id);
    const sse = new SseStream(res, this.#o.sseMaxBufferedBytes);
    sse.open();
    const unsubscribe = this.#o.calls.subscribe(id, {
      output: (json) => sse.event('output', json),
      end: (record) => {
        sse.event('result', JSON.stringify(record));
        sse.end();
      },
    });
    res.on('close', unsubscribe);
  }

  async #cancel(res: ServerResponse, id: string): Promise<void> {
    this.#call(id);
    const record = (await this.#o.calls.cancel(id))!;
    sendJson(res, 202, { id: record.id, status: record.status });
  }

  async #trace(res: ServerResponse, traceId: string): Promise<void> {
    await this.#o.flushSpans();
    const spans = await this.#o.traces.get(traceId);
    if (spans.length === 0) throw new HttpError(404, 'unknown_trace', `no spans stored for trace ${traceId}; spans arrive as each step of a call ends`);
    sendJson(res, 200, { traceId, spans });
  }

  async #openSession(req: IncomingMessage, res: ServerResponse, runnerId: string): Promise<void> {
    const body = await readBody(req, SessionBodySchema);
    const runner = this.#runner(runnerId);
    this.#connected(runner);
    const { sessionId, outcome } = await this.#o.sessions.open(runnerId, body, { runnerBoxPublicKey: runner.boxPublicKey });
    if (!outcome.ok) throw this.#sessionError(outcome);
    sendJson(res, 201, { sessionId });
  }

  async #closeSession(res: ServerResponse, sessionId: string): Promise<void> {
    const session = this.#o.sessions.get(sessionId);
    if (!session) throw new HttpError(404, 'unknown_session', `no open session ${sessionId}`);
    const runner = this.#runner(session.runnerId);
    this.#connected(runner);
    const outcome = await this.#o.sessions.close(session);
    // A runner that no longer knows the session (it restarted) has closed it already.
    if (!outcome.ok && outcome.code !== 'unknown_session') throw this.#sessionError(outcome);
    res.writeHead(204).end();
  }

  #sessionError(outcome: Exclude<SessionOutcome, { ok: true }>): HttpError {
    return new HttpError(sessionStatus(outcome.code), outcome.code, outcome.message);
  }
}

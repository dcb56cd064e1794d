import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';
import {
  DriverNameSchema,
  LimitsSchema,
  NetworkRequestSchema,
  PROTOCOL_VERSION,
  SessionOpenSchema,
  type ControlMessage,
  type MessageOf,
  type RunnerMessage,
} from '../protocol/index.js';
import type { KeyedQueue } from './atomic-file.js';
import { JsonCollection } from './json-collection.js';
import { CREDENTIAL_GRACE_MS, CredentialsBodySchema, sealCredentials } from './credentials.js';
import { messageId } from './runner-connection.js';

/** Body of `POST /v1/runners/{runnerId}/sessions`. */
export const SessionBodySchema = z
  .object({
    driver: DriverNameSchema.optional(),
    image: SessionOpenSchema.shape.image,
    limits: LimitsSchema.optional(),
    network: NetworkRequestSchema.optional(),
    credentials: CredentialsBodySchema,
  })
  .strict();
export type SessionBody = z.infer<typeof SessionBodySchema>;

export interface SessionRecord {
  id: string;
  runnerId: string;
  createdAt: string;
}

/** The runner's answer to a session request. */
export type SessionOutcome = { ok: true } | { ok: false; code: string; message: string };

export interface SessionsOptions {
  send(runnerId: string, msg: ControlMessage): boolean;
  clock: () => number;
  /** How long to wait for the runner's `session.result`; default 120 s (a container start can be slow). */
  replyTimeoutMs?: number;
}

interface Pending {
  runnerId: string;
  settle(outcome: SessionOutcome): void;
}

/**
 * Sessions opened on runners: `session.open` / `session.close` sent and the
 * runner's `session.result` matched by `ref`. The session → runner map is
 * persisted so that a close after a restart still finds its runner.
 */
export class Sessions {
  readonly #o: SessionsOptions;
  readonly #sessions: JsonCollection<SessionRecord>;
  readonly #pending = new Map<string, Pending>();

  private constructor(options: SessionsOptions, sessions: JsonCollection<SessionRecord>) {
    this.#o = options;
    this.#sessions = sessions;
  }

  static async load(root: string, queue: KeyedQueue, options: SessionsOptions): Promise<Sessions> {
    return new Sessions(options, await JsonCollection.load<SessionRecord>(join(root, 'sessions.json'), queue));
  }

  get(id: string): SessionRecord | undefined {
    return this.#sessions.get(id);
  }

  /** Opens a session on a connected runner; resolves with its id or the runner's error. */
  async open(
    runnerId: string,
    body: SessionBody,
    runner: { runnerBoxPublicKey: string },
    signal?: AbortSignal,
  ): Promise<{ sessionId: string; outcome: SessionOutcome }> {
    const sessionId = `sess_${randomBytes(12).toString('hex')}`;
    // Sealed to this runner and bound to this session id; the plain values go no further.
    const credentials = body.credentials?.length
      ? await sealCredentials(body.credentials, {
          runnerBoxPublicKey: runner.runnerBoxPublicKey,
          boundTo: { sessionId },
          expiresAt: this.#o.clock() + (this.#o.replyTimeoutMs ?? 120_000) + CREDENTIAL_GRACE_MS,
        })
      : undefined;
    const msg: ControlMessage = {
      v: PROTOCOL_VERSION,
      id: messageId(),
      type: 'session.open',
      sessionId,
      ...(body.driver ? { driver: body.driver } : {}),
      ...(body.image ? { image: body.image } : {}),
      ...(body.limits ? { limits: body.limits } : {}),
      ...(body.network ? { network: body.network } : {}),
      ...(credentials ? { credentials } : {}),
    };
    const outcome = await this.#request(runnerId, msg, signal);
    if (outcome.ok) {
      await this.#sessions.set(sessionId, { id: sessionId, runnerId, createdAt: new Date(this.#o.clock()).toISOString() });
    }
    return { sessionId, outcome };
  }

  /** Closes a session; the record is dropped when the runner confirms or no longer knows it. */
  async close(session: SessionRecord, signal?: AbortSignal): Promise<SessionOutcome> {
    const msg: ControlMessage = { v: PROTOCOL_VERSION, id: messageId(), type: 'session.close', sessionId: session.id };
    const outcome = await this.#request(session.runnerId, msg, signal);
    if (outcome.ok || outcome.code === 'unknown_session') await this.#sessions.delete(session.id);
    return outcome;
  }

  /** Matches a `session.result` to its request. */
  onSessionResult(runnerId: string, msg: MessageOf<RunnerMessage, 'session.result'>): void {
    const p = this.#pending.get(msg.ref);
    if (!p || p.runnerId !== runnerId) return;
    p.settle(
      msg.ok
        ? { ok: true }
        : { ok: false, code: msg.error?.code ?? 'internal', message: msg.error?.message ?? 'the runner refused the session request' },
    );
  }

  /** A runner `error` answering a session request (signature, schema); true when it matched one. */
  onRunnerError(runnerId: string, msg: MessageOf<RunnerMessage, 'error'>): boolean {
    const p = msg.ref === undefined ? undefined : this.#pending.get(msg.ref);
    if (!p || p.runnerId !== runnerId) return false;
    p.settle({ ok: false, code: msg.code, message: msg.message });
    return true;
  }

  /** Fails the requests waiting on a runner that went away. */
  onDisconnected(runnerId: string): void {
    for (const p of [...this.#pending.values()]) {
      if (p.runnerId === runnerId) {
        p.settle({ ok: false, code: 'runner_disconnected', message: 'the runner disconnected before answering; try again once it is back' });
      }
    }
  }

  #request(runnerId: string, msg: ControlMessage, signal?: AbortSignal): Promise<SessionOutcome> {
    const timeoutMs = this.#o.replyTimeoutMs ?? 120_000;
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => settle({ ok: false, code: 'runner_timeout', message: `the runner did not answer within ${timeoutMs} ms; check its log` }),
        timeoutMs,
      );
      const onAbort = () => settle({ ok: false, code: 'aborted', message: 'the request was aborted' });
      const settle = (outcome: SessionOutcome) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#pending.delete(msg.id);
        resolve(outcome);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(msg.id, { runnerId, settle });
      if (!this.#o.send(runnerId, msg)) {
        settle({ ok: false, code: 'runner_not_connected', message: 'the runner is not connected; start it and try again' });
      }
    });
  }
}

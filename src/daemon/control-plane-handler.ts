import path from 'node:path';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import * as tar from 'tar';
import { encodeOutputFrame, type ControlMessage, type MessageOf, type ToolResultMessage } from '../protocol/index.js';
import type { CallJournal } from '../connection/call-journal.js';
import type { RunnerConnection } from '../connection/runner-connection.js';
import type { Executor } from '../executor/executor.js';
import type { AuditSink } from '../executor/executor-options.js';
import { describeError, isRunnerError } from '../util/errors.js';
import { noopLogger, type Logger } from '../util/logger.js';

export interface ControlPlaneHandlerOptions {
  connection: () => RunnerConnection;
  journal: CallJournal;
  executor: Executor;
  /** Where session checkpoints (tar of the workspace) are kept. */
  checkpointDir: string;
  logger?: Logger;
  audit?: AuditSink;
  /** Checks a request's signature before it acts (issue 4); returns a refusal message or undefined. */
  verify?: (message: ControlMessage) => { code: string; message: string } | undefined;
}

type ToolCallMessage = MessageOf<ControlMessage, 'tool.call'>;

/**
 * Serves the control plane's messages: runs tool calls exactly once through
 * the executor (the call journal remembers every id), streams their output as
 * binary frames, keeps each result in the outbox until acknowledged, and
 * handles sessions, cancels and acks.
 */
export class ControlPlaneHandler {
  private readonly logger: Logger;

  constructor(private readonly options: ControlPlaneHandlerOptions) {
    this.logger = options.logger ?? noopLogger;
  }

  /** After each handshake: forget what the control plane holds, resend the rest. */
  async onConnected(known: string[]): Promise<void> {
    if (known.length) await this.options.journal.ack(known);
    for (const result of this.options.journal.pending()) {
      await this.options.connection().send(result);
    }
  }

  onMessage(message: ControlMessage): void {
    const refusal = this.options.verify?.(message);
    if (refusal) {
      this.options.audit?.append({ type: 'request.refused', messageType: message.type, code: refusal.code, reason: refusal.message });
      void this.send({ type: 'error', code: refusal.code, message: refusal.message, ref: message.id });
      return;
    }
    switch (message.type) {
      case 'tool.call':
        void this.handleToolCall(message).catch((err: unknown) =>
          this.logger.error({ callId: message.toolUse.id, err: describeError(err) }, 'tool call handling failed'),
        );
        return;
      case 'tool.cancel':
        if (this.options.executor.cancel(message.callId)) this.options.audit?.append({ type: 'call.cancel', callId: message.callId });
        return;
      case 'ack':
        void this.options.journal.ack(message.ids);
        return;
      case 'session.open':
      case 'session.close':
      case 'session.checkpoint':
      case 'session.restore':
        void this.handleSession(message);
        return;
      default:
        void this.send({ type: 'error', code: 'bad_message', message: `type: ${message.type} is not expected after the handshake`, ref: message.id });
    }
  }

  private send(message: Parameters<RunnerConnection['send']>[0]): Promise<boolean> {
    return this.options.connection().send(message);
  }

  private async handleToolCall(msg: ToolCallMessage): Promise<void> {
    const callId = msg.toolUse.id;
    const journal = this.options.journal;
    const seen = await journal.lookup(callId);
    if (seen.state === 'done') {
      // A redelivered call: never run twice, answer with the stored result.
      this.logger.info({ callId }, 'call seen before; sending its stored result again');
      await this.send(seen.result);
      return;
    }
    if (seen.state === 'running') {
      await this.send({ type: 'tool.accepted', callId });
      return;
    }
    await journal.begin(callId);
    this.options.audit?.append({ type: 'call.received', callId, tool: msg.toolUse.name, sessionId: msg.sessionId });
    await this.send({ type: 'tool.accepted', callId });
    const seq = { n: 0 };
    const conn = this.options.connection();
    const result = await this.options.executor.dispatch({
      callId,
      source: 'control-plane',
      name: msg.toolUse.name,
      input: msg.toolUse.input,
      ...(msg.sessionId ? { sessionId: msg.sessionId } : {}),
      ...(msg.timeoutMs ? { timeoutMs: msg.timeoutMs } : {}),
      onOutput: async (stream, chunk) => {
        // Output is best effort while disconnected; the result carries what matters.
        await conn.sendBinary(encodeOutputFrame({ callId, seq: seq.n++, stream, data: chunk }));
      },
    });
    const message: ToolResultMessage = {
      v: 1,
      id: `result-${callId}`,
      type: 'tool.result',
      callId,
      status: result.status,
      result: { type: 'tool_result', tool_use_id: callId, content: result.content, is_error: result.isError },
      durationMs: Math.round(result.durationMs * 1000) / 1000,
    };
    await journal.complete(message);
    this.options.audit?.append({ type: 'call.result', callId, tool: msg.toolUse.name, status: result.status, durationMs: message.durationMs });
    await this.send(message);
  }

  private async handleSession(
    msg: MessageOf<ControlMessage, 'session.open' | 'session.close' | 'session.checkpoint' | 'session.restore'>,
  ): Promise<void> {
    const ex = this.options.executor;
    const reply = (ok: boolean, extra: { checkpointId?: string; error?: { code: string; message: string } } = {}) =>
      this.send({ type: 'session.result', ref: msg.id, sessionId: msg.sessionId, ok, ...extra });
    try {
      if (msg.type === 'session.open') {
        ex.openSession(msg.sessionId, {
          ...(msg.driver ? { driver: msg.driver } : {}),
          ...(msg.image ? { image: msg.image } : {}),
          ...(msg.limits ? { limits: msg.limits } : {}),
          ...(msg.network ? { network: msg.network } : {}),
        });
        this.options.audit?.append({ type: 'session.open', sessionId: msg.sessionId, driver: msg.driver });
        await reply(true);
      } else if (msg.type === 'session.close') {
        const closed = await ex.closeSession(msg.sessionId);
        this.options.audit?.append({ type: 'session.close', sessionId: msg.sessionId });
        await rm(path.join(this.options.checkpointDir, safeName(msg.sessionId)), { recursive: true, force: true });
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

  private sessionOrThrow(id: string) {
    const s = this.options.executor.sessions.get(id);
    if (!s) throw Object.assign(new Error(`no open session ${id}; open it first`), {});
    return s;
  }

  /** A tar of the session's workspace, kept on the runner. */
  private async checkpoint(sessionId: string): Promise<string> {
    const sandbox = await this.sessionOrThrow(sessionId).sandbox();
    const dir = path.join(this.options.checkpointDir, safeName(sessionId));
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const id = `ckpt_${randomBytes(8).toString('hex')}`;
    const entries = await readdir(sandbox.workspaceDir);
    await tar.c({ cwd: sandbox.workspaceDir, file: path.join(dir, `${id}.tar`), portable: true, follow: false }, entries.length ? entries : []);
    return id;
  }

  private async restore(sessionId: string, checkpointId: string): Promise<void> {
    const sandbox = await this.sessionOrThrow(sessionId).sandbox();
    const file = path.join(this.options.checkpointDir, safeName(sessionId), `${safeName(checkpointId)}.tar`);
    for (const e of await readdir(sandbox.workspaceDir)) await rm(path.join(sandbox.workspaceDir, e), { recursive: true, force: true });
    await tar.x({ cwd: sandbox.workspaceDir, file, strict: true, preservePaths: false });
  }
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]/g, '_');
}

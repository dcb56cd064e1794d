import { isAscii } from 'node:buffer';
import { StringDecoder } from 'node:string_decoder';
import type { Span } from '@opentelemetry/api';
import {
  PROTOCOL_VERSION,
  type CallStatus,
  type ControlMessage,
  type MessageOf,
  type OutputFrame,
  type RunnerMessage,
  type ToolCall,
  type ToolResultContent,
} from '../protocol/index.js';
import type { Logger } from '../util/logger.js';
import { asciiJsonObject } from './ascii-json.js';
import { publicCall, type CallRecord, type CallStore, type PublicCall } from './call-store.js';
import { CREDENTIAL_GRACE_MS, sealCredentials, type CredentialsBody } from './credentials.js';
import { messageId, type RunnerConnection } from './runner-connection.js';
import type { ControlPlaneTracer } from './tracing.js';

/** One output chunk as the events stream shows it. */
export interface OutputEvent {
  seq: number;
  stream: 'stdout' | 'stderr';
  data: string;
}

/** A listener on one call: its output as it arrives, then its end. */
export interface CallSubscriber {
  /** One output event, as the JSON of an OutputEvent (UTF-8), the same bytes for every subscriber. */
  output(json: Buffer): void;
  end(record: PublicCall): void;
}

/** A call to start, already validated against the runner's tools and the input schema. */
export interface SubmitRequest {
  id: string;
  name: string;
  input: Record<string, unknown>;
  sessionId?: string;
  timeoutMs?: number;
  /** Plain credentials and vault references; sealed here to `runnerBoxPublicKey`, never stored plain. */
  credentials?: CredentialsBody;
  runnerBoxPublicKey?: string;
  /** Domains the call's fresh sandbox may reach (the runner's egress proxy and local policy decide). */
  network?: { allow: string[] };
  /**
   * The client waits for the end (wait=true): the record's first write is put
   * off by ACCEPT_WRITE_DELAY_MS and skipped when the call has ended by then
   * (its end is written instead). Nobody was told the call exists before its
   * end; if the control plane dies first, the client sees its request fail and
   * a retry with the same id gets the runner's stored result, never a second run.
   */
  deferSave?: boolean;
}

export interface ToolCallsOptions {
  store: CallStore;
  tracer: ControlPlaneTracer;
  /** Sends to the runner's live connection; false when it has none. */
  send(runnerId: string, msg: ControlMessage): boolean;
  clock: () => number;
  logger: Logger;
}

/** What is only kept in memory while a call runs. */
interface LiveCall {
  span: Span | undefined;
  subscribers: Set<CallSubscriber>;
  buffer: Buffer[];
  bufferedBytes: number;
  decoders: Partial<Record<'stdout' | 'stderr', StringDecoder>>;
  sentMessageIds: string[];
}

// Output kept per running call for a client that subscribes late; beyond it,
// chunks still stream live but are not replayed.
const REPLAY_BYTES = 8 * 1024 * 1024;
// `welcome.known` covers results of the last day; older ones a runner resends
// are still deduplicated and acknowledged, just not announced up front.
const KNOWN_WINDOW_MS = 24 * 3600_000;
const KNOWN_MAX = 10_000;
const ACCEPT_WRITE_DELAY_MS = 100;
// Expiry of sealed credentials of a call that names no timeout: above the
// runner's default deadline (calls.defaultTimeoutMs, 120 s), plus the grace.
const DEFAULT_CALL_TIMEOUT_MS = 300_000;

/**
 * The life of tool calls on the control-plane side: dispatch, redelivery of
 * unaccepted calls after a reconnect, output fan-out, and storing each result
 * exactly once (a duplicate is acknowledged again but not stored or announced).
 */
export class ToolCalls {
  readonly #o: ToolCallsOptions;
  readonly #live = new Map<string, LiveCall>();
  /** `tool.call` message id → call id, to match a runner's `error` reply to its call. */
  readonly #byMessage = new Map<string, string>();
  /** Record writes put off a moment (first writes of waited-on calls, acceptances), written at once by dispose(). */
  readonly #delayedWrites = new Map<NodeJS.Timeout, CallRecord>();

  constructor(options: ToolCallsOptions) {
    this.#o = options;
  }

  get(id: string): CallRecord | undefined {
    return this.#o.store.get(id);
  }

  /**
   * Starts a call, or returns the existing record when the id was used before
   * (`created: false`); the check and the insert share one tick, so two
   * requests with one id start it once. Resolves once the call is sent;
   * `saved` resolves once its record is on disk.
   */
  async submit(runnerId: string, req: SubmitRequest): Promise<{ record: CallRecord; created: boolean; saved: Promise<void> }> {
    const existing = this.#o.store.get(req.id);
    if (existing) return { record: existing, created: false, saved: this.#o.store.settled(req.id) };
    // Sealed before anything is recorded: the record (and its pending message) only ever holds sealed values.
    const credentials =
      req.credentials?.length && req.runnerBoxPublicKey
        ? await sealCredentials(req.credentials, {
            runnerBoxPublicKey: req.runnerBoxPublicKey,
            boundTo: { callId: req.id },
            expiresAt: this.#o.clock() + (req.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS) + CREDENTIAL_GRACE_MS,
          })
        : undefined;
    // Sealing awaited: a request with the same id may have started the call meanwhile.
    const raced = this.#o.store.get(req.id);
    if (raced) return { record: raced, created: false, saved: this.#o.store.settled(req.id) };
    const { span, traceId, traceparent } = this.#o.tracer.startCall(req.id, runnerId, req.name);
    const msg: ToolCall = {
      v: PROTOCOL_VERSION,
      id: messageId(),
      type: 'tool.call',
      toolUse: { type: 'tool_use', id: req.id, name: req.name, input: req.input },
      ...(req.sessionId !== undefined ? { sessionId: req.sessionId } : {}),
      ...(req.timeoutMs !== undefined ? { timeoutMs: req.timeoutMs } : {}),
      traceparent,
      ...(credentials ? { credentials } : {}),
      ...(req.network ? { network: req.network } : {}),
    };
    const record: CallRecord = {
      id: req.id,
      runnerId,
      name: req.name,
      sessionId: req.sessionId ?? null,
      status: 'running',
      content: null,
      isError: null,
      durationMs: null,
      traceId,
      createdAt: new Date(this.#o.clock()).toISOString(),
      endedAt: null,
      accepted: false,
      cancelRequested: false,
      pending: msg,
    };
    this.#liveOf(req.id).span = span;
    const saved = req.deferSave ? this.#deferSave(record) : this.#o.store.save(record);
    // Sent while the record is being written: the runner's work overlaps the
    // fsync. A crash before the write lands loses a call nobody was answered
    // for; a retry with the same id is deduplicated by the runner.
    this.#dispatch(this.#o.store.get(req.id)!);
    return { record: this.#o.store.get(req.id)!, created: true, saved };
  }

  /** Resolves once every write of the call's record asked for so far is on disk. */
  saved(id: string): Promise<void> {
    return this.#o.store.settled(id);
  }

  /** Resolves with the record once the call has ended; rejects when `signal` aborts first. */
  waitForEnd(id: string, signal?: AbortSignal): Promise<PublicCall> {
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        unsubscribe();
        reject(signal?.reason);
      };
      const unsubscribe = this.subscribe(id, {
        output: () => undefined,
        end: (record) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(record);
        },
      });
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Replays the output kept so far, then streams; a call already ended is announced at once. */
  subscribe(id: string, subscriber: CallSubscriber): () => void {
    const record = this.#o.store.get(id);
    if (!record) throw new Error(`no call ${id}`);
    if (record.status !== 'running') {
      subscriber.end(publicCall(record));
      return () => undefined;
    }
    const live = this.#liveOf(id);
    for (const event of live.buffer) subscriber.output(event);
    live.subscribers.add(subscriber);
    return () => live.subscribers.delete(subscriber);
  }

  /** Asks the runner to cancel; remembered and sent again on reconnect while the call runs. */
  async cancel(id: string): Promise<CallRecord | undefined> {
    const record = this.#o.store.get(id);
    if (!record || record.status !== 'running') return record;
    record.cancelRequested = true;
    await this.#o.store.save(record);
    this.#sendCancel(record);
    return record;
  }

  /** Result ids this control plane holds for a runner, for `welcome.known`. */
  knownResults(runnerId: string): string[] {
    const since = this.#o.clock() - KNOWN_WINDOW_MS;
    return this.#o.store
      .forRunner(runnerId)
      .filter((r) => r.status !== 'running' && r.endedAt !== null && Date.parse(r.endedAt) >= since)
      .sort((a, b) => b.endedAt!.localeCompare(a.endedAt!))
      .slice(0, KNOWN_MAX)
      .map((r) => r.id);
  }

  /** After a (re)connect: sends again every call the runner never accepted, then pending cancels. */
  onConnected(runnerId: string): void {
    for (const record of this.#o.store.forRunner(runnerId)) {
      if (record.status !== 'running') continue;
      if (!record.accepted) this.#dispatch(record);
      if (record.cancelRequested) this.#sendCancel(record);
    }
  }

  /** Writes a new record a moment later unless the call has ended (and written its end) by then. */
  #deferSave(record: CallRecord): Promise<void> {
    this.#o.store.put(record);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#delayedWrites.delete(timer);
        const current = this.#o.store.get(record.id);
        if (!current || current.status !== 'running') return resolve(this.#o.store.settled(record.id));
        this.#o.store.save(current).then(resolve, reject);
      }, ACCEPT_WRITE_DELAY_MS);
      this.#delayedWrites.set(timer, record);
    });
  }

  onAccepted(runnerId: string, msg: MessageOf<RunnerMessage, 'tool.accepted'>): void {
    const record = this.#o.store.get(msg.callId);
    if (!record || record.runnerId !== runnerId || record.status !== 'running' || record.accepted) return;
    record.accepted = true;
    record.pending = null;
    this.#forgetMessages(record.id);
    // Written a moment later unless the result comes first (and writes it):
    // a write now would put one more fsync on every short call's path, and
    // losing it in a crash only means the call is sent once more after the
    // restart, which the runner dedupes by call id.
    const timer = setTimeout(() => {
      this.#delayedWrites.delete(timer);
      // The store may hold a newer copy by now (a quick result): never write an older state over it.
      const current = this.#o.store.get(record.id);
      if (!current || current.status !== 'running') return;
      current.accepted = true;
      current.pending = null;
      this.#o.store.save(current).catch((err) => this.#o.logger.error({ err, callId: record.id }, 'could not save a call record'));
    }, ACCEPT_WRITE_DELAY_MS);
    this.#delayedWrites.set(timer, record);
  }

  onOutput(runnerId: string, callId: string, event: OutputEvent): void {
    const record = this.#o.store.get(callId);
    if (!record || record.runnerId !== runnerId || record.status !== 'running') return;
    this.#publish(this.#liveOf(callId), Buffer.from(JSON.stringify(event)));
  }

  onOutputFrame(runnerId: string, frame: OutputFrame): void {
    const record = this.#o.store.get(frame.callId);
    if (!record || record.runnerId !== runnerId || record.status !== 'running') return;
    const live = this.#liveOf(frame.callId);
    const decoder = live.decoders[frame.stream];
    if (isAscii(frame.data)) {
      // ASCII is its own UTF-8, and its JSON is ASCII too: latin1 decodes and
      // encodes it without the UTF-8 work (about 15% of this path's cost per MB).
      // A character left incomplete by the frame before cannot be finished by
      // an ASCII byte: end() gives the U+FFFD that write() would have given.
      const held = decoder?.end() ?? '';
      if (held === '') {
        // The same bytes as JSON.stringify of the OutputEvent ({seq, stream, data} in that order).
        this.#publish(live, asciiJsonObject(`{"seq":${frame.seq},"stream":"${frame.stream}","data":"`, frame.data));
        return;
      }
      const event: OutputEvent = { seq: frame.seq, stream: frame.stream, data: held + frame.data.toString('latin1') };
      this.#publish(live, Buffer.from(JSON.stringify(event)));
      return;
    }
    // A decoder per stream keeps a UTF-8 character split across frames whole.
    const data = (live.decoders[frame.stream] ??= new StringDecoder('utf8')).write(frame.data);
    this.#publish(live, Buffer.from(JSON.stringify({ seq: frame.seq, stream: frame.stream, data } satisfies OutputEvent)));
  }

  /**
   * Keeps an event for replay and hands it to the subscribers. Serialised once
   * for all of them, and kept as bytes: output strings held for replay
   * survived each young-generation GC and were copied by it, which cost the
   * control plane more per MB than the serialising.
   */
  #publish(live: LiveCall, json: Buffer): void {
    if (live.bufferedBytes < REPLAY_BYTES) {
      live.buffer.push(json);
      live.bufferedBytes += json.length;
    }
    for (const s of live.subscribers) s.output(json);
  }

  /**
   * Stores a result once and acknowledges it on the connection it came on,
   * after it is on disk: a crash before the ack only makes the runner resend it.
   * Clients waiting on the call are told as soon as the result is here, while
   * it is being written: the runner keeps it until the ack, so a crash of the
   * control plane before the write lands loses nothing (the runner sends it
   * again after the restart), and no client waits on the fsync.
   */
  async onResult(runnerId: string, conn: RunnerConnection, msg: MessageOf<RunnerMessage, 'tool.result'>): Promise<void> {
    const ack = () => conn.send({ v: PROTOCOL_VERSION, id: messageId(), type: 'ack', ids: [msg.callId] });
    const record = this.#o.store.get(msg.callId);
    if (!record || record.runnerId !== runnerId) {
      this.#o.logger.warn({ runnerId, callId: msg.callId }, 'result for a call not sent to this runner; acknowledged and dropped');
      ack();
      return;
    }
    if (record.status !== 'running') {
      this.#o.logger.debug({ runnerId, callId: msg.callId }, 'duplicate result; acknowledged again');
      await this.#o.store.settled(record.id);
      ack();
      return;
    }
    await this.#finish(record, msg.status, msg.result.content, msg.result.is_error, msg.durationMs);
    ack();
  }

  /** A runner `error` answering a `tool.call` it refused (signature, policy, busy): the call fails. */
  async onRunnerError(runnerId: string, msg: MessageOf<RunnerMessage, 'error'>): Promise<boolean> {
    const callId = msg.ref === undefined ? undefined : this.#byMessage.get(msg.ref);
    if (callId === undefined) return false;
    const record = this.#o.store.get(callId);
    if (!record || record.runnerId !== runnerId || record.status !== 'running' || record.accepted) return true;
    // A runner that is shutting down did not run the call: it stays unaccepted and goes out again on the next connection.
    if (msg.code === 'draining') return true;
    const durationMs = this.#o.clock() - Date.parse(record.createdAt);
    await this.#finish(record, 'failed', `the runner refused the call (${msg.code}): ${msg.message}`, true, durationMs);
    return true;
  }

  /**
   * Writes acceptances not yet on disk and forgets what is held in memory. Records stay `running` on disk and finish
   * after a restart; their open spans are dropped rather than ended, since an
   * end now would record a duration that never happened.
   */
  async dispose(): Promise<void> {
    const unsaved = [...this.#delayedWrites].map(([timer, record]) => {
      clearTimeout(timer);
      return record.id;
    });
    this.#delayedWrites.clear();
    this.#live.clear();
    // On a clean stop the records and acceptances still waiting to be written are written now, as they stand.
    const current = [...new Set(unsaved)].map((id) => this.#o.store.get(id)).filter((r): r is CallRecord => r?.status === 'running');
    await Promise.all(current.map((r) => this.#o.store.save(r)));
  }

  async #finish(record: CallRecord, status: CallStatus, content: ToolResultContent, isError: boolean, durationMs: number): Promise<void> {
    record.status = status;
    record.content = content;
    record.isError = isError;
    record.durationMs = durationMs;
    record.endedAt = new Date(this.#o.clock()).toISOString();
    record.pending = null;
    const live = this.#live.get(record.id);
    this.#live.delete(record.id);
    this.#forgetMessages(record.id, live);
    const saved = this.#o.store.save(record);
    if (live?.span) this.#o.tracer.endCall(live.span, status, isError);
    const pub = publicCall(record);
    for (const s of live?.subscribers ?? []) s.end(pub);
    await saved;
  }

  #dispatch(record: CallRecord): void {
    if (!record.pending) return;
    // A fresh message id (and signature) per send; the runner dedupes by the tool_use id.
    const msg: ToolCall = { ...record.pending, id: messageId() };
    this.#byMessage.set(msg.id, record.id);
    this.#liveOf(record.id).sentMessageIds.push(msg.id);
    this.#o.send(record.runnerId, msg);
  }

  #sendCancel(record: CallRecord): void {
    this.#o.send(record.runnerId, { v: PROTOCOL_VERSION, id: messageId(), type: 'tool.cancel', callId: record.id });
  }

  #forgetMessages(callId: string, live = this.#live.get(callId)): void {
    for (const id of live?.sentMessageIds ?? []) this.#byMessage.delete(id);
    if (live) live.sentMessageIds = [];
  }

  #liveOf(id: string): LiveCall {
    let live = this.#live.get(id);
    if (!live) {
      live = { span: undefined, subscribers: new Set(), buffer: [], bufferedBytes: 0, decoders: {}, sentMessageIds: [] };
      this.#live.set(id, live);
    }
    return live;
  }
}

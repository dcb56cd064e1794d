import type Anthropic from '@anthropic-ai/sdk';
import { noopLogger, type Logger } from '../util/logger.js';
import { describeError } from '../util/errors.js';
import { apiStatus, isFatal4xx, isRetryable } from './api-client.js';
import { backoffMs, pause } from './backoff.js';
import { parseToolUse, resultEvent, SERVER_SIDE_TOOLS, toSessionContent, type ToolUseEvent } from './tool-events.js';

/** Why the loop ended. */
export type LoopEnd = 'terminated' | 'idle' | 'stopping' | 'shutdown' | 'lease_lost' | 'stream_refused';

/** One tool call the loop handled, for status, metrics and the demo. */
export interface ServedCall {
  id: string;
  name: string;
  isError: boolean;
  posted: boolean;
  /** First 200 characters of the posted text. */
  preview: string;
}

export interface SessionEventLoopOptions {
  /** Client with the item's credential. */
  client: Anthropic;
  sessionId: string;
  /** Tool names this worker answers. */
  ownedTools: ReadonlySet<string>;
  /** Runs one call; resolves (never rejects) with its content. `signal` aborts on shutdown, lease loss or timeout. */
  execute: (call: ToolUseEvent, signal: AbortSignal) => Promise<{ content: string | Array<{ type: 'text'; text: string }>; isError: boolean }>;
  /** Runs after each call (the memory sync check). */
  afterCall?: () => Promise<void>;
  /** Idle limit after an `end_turn`; 0 disables. */
  maxIdleMs: number;
  /** How long a result post may be retried: the lease TTL. */
  retryWindowMs: () => number;
  logger?: Logger;
  onServed?: (call: ServedCall) => void;
  /** Stream reconnect backoff, default 0.5 s doubling to 10 s. */
  reconnectMs?: [number, number];
}

/**
 * Follows one session's event stream and answers its tool calls, one at a
 * time. Built on the SDK's `sessions.events` resources rather than its
 * `SessionToolRunner`, because a shutdown here must cancel the call in flight
 * *and still post its error result*, a malformed call must be answered with an
 * error naming the field, and every call goes through the daemon's dispatcher.
 *
 * The stream is opened first, then the history listed; events are
 * de-duplicated by id, so a call delivered twice or seen again after a
 * reconnect is answered exactly once.
 */
export class SessionEventLoop {
  readonly #o: SessionEventLoopOptions;
  readonly #log: Logger;
  readonly #seen = new Set<string>();
  readonly #answered = new Set<string>();
  /** Queued or running calls: not routed again by a reconcile. */
  readonly #active = new Set<string>();
  readonly #verdicts = new Map<string, string>();
  readonly #held = new Map<string, ToolUseEvent>();
  readonly #queue: Array<{ id: string; type: string; event?: ToolUseEvent; error?: string }> = [];
  readonly #streamAbort = new AbortController();
  readonly #postAbort = new AbortController();
  #toolAbort: AbortController | undefined;
  #wake: (() => void) | undefined;
  #end: LoopEnd | undefined;
  #endResolve!: (end: LoopEnd) => void;
  readonly #ended = new Promise<LoopEnd>((r) => (this.#endResolve = r));
  #idleTimer: NodeJS.Timeout | undefined;
  #idleArmed = false;
  #current: string | undefined;

  constructor(options: SessionEventLoopOptions) {
    this.#o = options;
    this.#log = options.logger ?? noopLogger;
  }

  /** The tool running now, if any. */
  get currentTool(): string | undefined {
    return this.#current;
  }

  /** Runs until the session ends, the lease ends or {@link stop} is called. */
  async run(): Promise<LoopEnd> {
    const stream = this.#streamLoop().catch((err) => {
      this.#log.error({ err: describeError(err) }, 'event stream failed');
      this.stop('stream_refused');
    });
    const executor = this.#executorLoop();
    const end = await this.#ended;
    this.#streamAbort.abort();
    await stream;
    await executor;
    this.#clearIdle();
    return end;
  }

  /**
   * Ends the loop. `shutdown` and `terminated` cancel the call in flight; a
   * shutdown still posts its error result. `lease_lost` also stops posting,
   * since the item now belongs to the queue or another worker.
   */
  stop(end: LoopEnd): void {
    if (this.#end) return;
    this.#end = end;
    if (end === 'lease_lost') this.#postAbort.abort();
    if (end !== 'idle' && end !== 'stopping') this.#toolAbort?.abort(end);
    if (end === 'stopping') this.#toolAbort?.abort(end);
    this.#wake?.();
    this.#endResolve(end);
  }

  async #streamLoop(): Promise<void> {
    const [base, cap] = this.#o.reconnectMs ?? [500, 10_000];
    let attempt = 0;
    const signal = this.#streamAbort.signal;
    while (!signal.aborted) {
      try {
        const stream = await this.#o.client.beta.sessions.events.stream(this.#o.sessionId, {}, { signal, timeout: 24 * 3600_000 });
        await this.#reconcile(signal);
        for await (const ev of stream) {
          attempt = 0;
          this.#onEvent(ev as unknown as Record<string, unknown>, 'stream');
          if (this.#end) return;
        }
        if (signal.aborted) return;
        this.#log.warn({ sessionId: this.#o.sessionId }, 'event stream closed by the server; reconnecting');
      } catch (err) {
        if (signal.aborted) return;
        if (isFatal4xx(err)) {
          this.#log.error({ sessionId: this.#o.sessionId, status: apiStatus(err) }, 'event stream refused; ending the session');
          this.stop('stream_refused');
          return;
        }
        this.#log.warn({ sessionId: this.#o.sessionId, err: describeError(err) }, 'event stream dropped; reconnecting');
      }
      await pause(backoffMs(attempt++, base, cap), signal);
    }
  }

  /** Reads the whole history after the stream is attached, then routes what is unanswered. */
  async #reconcile(signal: AbortSignal): Promise<void> {
    const pending: Array<Record<string, unknown>> = [];
    let lastTurnEnded = false;
    try {
      for await (const raw of this.#o.client.beta.sessions.events.list(this.#o.sessionId, { limit: 1000 }, { signal })) {
        const ev = raw as unknown as Record<string, unknown>;
        const type = String(ev.type);
        if (type === 'agent.tool_use' || type === 'agent.custom_tool_use') pending.push(ev);
        else this.#note(ev);
        if (type !== 'user.tool_confirmation') lastTurnEnded = endsTurn(ev);
      }
    } catch (err) {
      if (signal.aborted) throw err;
      this.#log.warn({ err: describeError(err) }, 'listing the session history failed; serving from the stream');
      return;
    }
    for (const ev of pending) {
      const id = typeof ev.id === 'string' ? ev.id : undefined;
      if (id && (this.#answered.has(id) || this.#active.has(id))) {
        this.#seen.add(id);
        continue;
      }
      if (id) this.#seen.add(id);
      this.#route(ev);
    }
    if (lastTurnEnded) this.#armIdle();
  }

  /** Bookkeeping for results and confirmations (history or stream). */
  #note(ev: Record<string, unknown>): void {
    if (ev.type === 'user.tool_result' && typeof ev.tool_use_id === 'string') this.#answered.add(ev.tool_use_id);
    if (ev.type === 'user.custom_tool_result' && typeof ev.custom_tool_use_id === 'string') this.#answered.add(ev.custom_tool_use_id);
    if (ev.type === 'user.tool_confirmation' && typeof ev.tool_use_id === 'string') {
      const verdict = String(ev.result);
      this.#verdicts.set(ev.tool_use_id, verdict);
      const held = this.#held.get(ev.tool_use_id);
      if (held) {
        this.#held.delete(held.id);
        this.#applyVerdict(held, verdict);
      }
    }
  }

  #onEvent(ev: Record<string, unknown>, from: 'stream'): void {
    void from;
    const type = String(ev.type);
    if (type !== 'user.tool_confirmation') {
      if (endsTurn(ev)) this.#armIdle();
      else this.#clearIdle();
    }
    switch (type) {
      case 'agent.tool_use':
      case 'agent.custom_tool_use': {
        const id = typeof ev.id === 'string' ? ev.id : undefined;
        if (id && this.#seen.has(id)) return;
        if (id) this.#seen.add(id);
        if (id && (this.#answered.has(id) || this.#active.has(id))) return;
        this.#route(ev);
        return;
      }
      case 'session.status_terminated':
      case 'session.deleted':
        this.#log.info({ sessionId: this.#o.sessionId, type }, 'session ended');
        this.stop('terminated');
        return;
      default:
        this.#note(ev);
    }
  }

  /** Decides what to do with one call: answer, hold for confirmation, or leave alone. */
  #route(raw: Record<string, unknown>): void {
    const parsed = parseToolUse(raw);
    if (!parsed.ok) {
      if (!parsed.id) {
        this.#log.warn({ sessionId: this.#o.sessionId }, 'a tool call event without an id cannot be answered; ignoring it');
        return;
      }
      if (parsed.type === 'agent.custom_tool_use') return;
      this.#enqueue({ id: parsed.id, type: parsed.type, error: parsed.message });
      return;
    }
    const ev = parsed.event;
    // Custom tools belong to whoever registered them (often the app's backend); server tools to Anthropic.
    if (ev.type === 'agent.custom_tool_use' && !this.#o.ownedTools.has(ev.name)) {
      this.#log.info({ tool: ev.name, toolUseId: ev.id }, 'custom tool not owned by this worker; leaving it for its owner');
      return;
    }
    if (SERVER_SIDE_TOOLS.has(ev.name) && !this.#o.ownedTools.has(ev.name)) return;
    const permission = ev.evaluated_permission ?? 'allow';
    if (permission === 'deny') {
      // The denial resolves the call server-side: nothing to post.
      this.#answered.add(ev.id);
      this.#log.info({ tool: ev.name, toolUseId: ev.id }, 'tool call denied by policy; not executing');
      return;
    }
    if (permission !== 'allow') {
      const verdict = this.#verdicts.get(ev.id);
      if (verdict !== undefined) return this.#applyVerdict(ev, verdict);
      // `ask`, or a value this code does not know: fail closed and wait for the app's confirmation.
      this.#held.set(ev.id, ev);
      this.#log.info({ tool: ev.name, toolUseId: ev.id }, 'tool call awaits confirmation; holding it');
      return;
    }
    this.#enqueue({ id: ev.id, type: ev.type, event: ev });
  }

  #applyVerdict(ev: ToolUseEvent, verdict: string): void {
    if (verdict === 'allow') return this.#enqueue({ id: ev.id, type: ev.type, event: ev });
    this.#answered.add(ev.id);
    this.#log.info({ tool: ev.name, toolUseId: ev.id }, 'tool call denied by the user; not executing');
  }

  #enqueue(item: { id: string; type: string; event?: ToolUseEvent; error?: string }): void {
    this.#active.add(item.id);
    this.#queue.push(item);
    this.#clearIdle();
    this.#wake?.();
  }

  async #executorLoop(): Promise<void> {
    for (;;) {
      const item = this.#queue.shift();
      if (!item) {
        if (this.#end) return;
        await new Promise<void>((r) => (this.#wake = r));
        this.#wake = undefined;
        continue;
      }
      if (this.#end && this.#end !== 'shutdown') return;
      await this.#serve(item);
      if (this.#end) return;
      await this.#o.afterCall?.().catch((err) => this.#log.warn({ err: describeError(err) }, 'after-call hook failed'));
    }
  }

  async #serve(item: { id: string; type: string; event?: ToolUseEvent; error?: string }): Promise<void> {
    let content: string | Array<{ type: 'text'; text: string }>;
    let isError: boolean;
    const name = item.event?.name ?? '(malformed)';
    if (this.#end === 'shutdown') {
      content = 'the worker is shutting down; the call was not run';
      isError = true;
    } else if (item.error) {
      content = item.error;
      isError = true;
    } else if (item.event && item.event.type === 'agent.tool_use' && !this.#o.ownedTools.has(item.event.name)) {
      content = `unknown tool ${item.event.name}: this worker serves ${[...this.#o.ownedTools].join(', ')}`;
      isError = true;
    } else {
      this.#toolAbort = new AbortController();
      this.#current = name;
      try {
        ({ content, isError } = await this.#o.execute(item.event!, this.#toolAbort.signal));
      } catch (err) {
        content = `Error: ${describeError(err)}`;
        isError = true;
      } finally {
        this.#current = undefined;
      }
      const reason = this.#toolAbort.signal.reason;
      this.#toolAbort = undefined;
      if (reason === 'shutdown') {
        content = `the tool call was cancelled because the worker is shutting down\n${typeof content === 'string' ? content : content.map((c) => c.text).join('')}`.trim();
        isError = true;
      }
      if (reason === 'terminated' || reason === 'lease_lost') {
        this.#active.delete(item.id);
        return;
      }
    }
    const blocks = toSessionContent(content);
    const posted = await this.#post(resultEvent(item.type, item.id, isError, blocks), item.id);
    this.#active.delete(item.id);
    this.#o.onServed?.({ id: item.id, name, isError, posted, preview: blocks.map((b) => b.text).join('').slice(0, 200) });
  }

  /** Posts one result; retries 5xx/408/409/429 and network errors while the lease can still be ours. */
  async #post(event: ReturnType<typeof resultEvent>, id: string): Promise<boolean> {
    const start = Date.now();
    for (let attempt = 0; ; attempt++) {
      if (this.#postAbort.signal.aborted) return false;
      try {
        await this.#o.client.beta.sessions.events.send(this.#o.sessionId, { events: [event] }, { signal: this.#postAbort.signal, timeout: 30_000 });
        this.#answered.add(id);
        return true;
      } catch (err) {
        const left = this.#o.retryWindowMs() - (Date.now() - start);
        if (!isRetryable(err) || left <= 0) {
          this.#log.error({ toolUseId: id, status: apiStatus(err), err: describeError(err) }, 'posting the tool result failed; giving up');
          return false;
        }
        const wait = Math.min(backoffMs(attempt, 1_000, 30_000), left);
        this.#log.warn({ toolUseId: id, status: apiStatus(err), backoffMs: Math.round(wait) }, 'posting the tool result failed; retrying');
        await pause(wait, this.#postAbort.signal);
      }
    }
  }

  #armIdle(): void {
    if (this.#o.maxIdleMs <= 0) return;
    // Held or running calls defer the countdown: the turn is not really over.
    if (this.#held.size > 0 || this.#active.size > 0) return;
    this.#clearIdle();
    this.#idleArmed = true;
    this.#idleTimer = setTimeout(() => {
      this.#log.info({ sessionId: this.#o.sessionId, maxIdleMs: this.#o.maxIdleMs }, 'session idle after its turn ended; detaching');
      this.stop('idle');
    }, this.#o.maxIdleMs);
  }

  #clearIdle(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    this.#idleArmed = false;
  }
}

/** An idle whose stop reason is anything but `requires_action` ends the turn. */
function endsTurn(ev: Record<string, unknown>): boolean {
  if (ev.type !== 'session.status_idle') return false;
  const reason = ev.stop_reason as { type?: string } | undefined;
  return reason?.type !== 'requires_action';
}

import type { ServerResponse } from 'node:http';
import { FakeHttpError, badRequest, now } from './http-util.js';

export type FakeEvent = { id: string; type: string; processed_at: string } & Record<string, unknown>;

export interface FakeSessionInit {
  id: string;
  environmentId: string;
  skills?: Array<{ type: 'custom' | 'anthropic'; skill_id: string; version: string }>;
  /** Memory stores attached: id, name, access. */
  memoryStores?: Array<{ memory_store_id: string; name: string; access?: 'read_write' | 'read_only' }>;
  /** The scripted agent in place of the model; starts when a worker first attaches the stream. */
  script?: (agent: ScriptedAgent) => Promise<void>;
}

/**
 * One Managed Agents session: its persisted event history, live SSE
 * subscribers (no replay), the validation of posted events, and the scripted
 * agent that plays the model.
 */
export class FakeSession {
  readonly id: string;
  readonly environmentId: string;
  readonly events: FakeEvent[] = [];
  readonly init: FakeSessionInit;
  status: 'idle' | 'running' | 'terminated' = 'idle';
  archived = false;
  /** Every result post received (accepted or refused), by tool_use id. */
  readonly resultPosts = new Map<string, number>();
  /** Refused posts, with the message given. */
  readonly refusedPosts: string[] = [];
  /** Fault: emit the next stream event twice. */
  duplicateNext = false;
  /** How many times a stream was opened. */
  streamsOpened = 0;
  readonly agent: ScriptedAgent;
  #subscribers = new Set<ServerResponse>();
  #waiters: Array<{ match: (e: FakeEvent) => boolean; resolve: (e: FakeEvent) => void }> = [];
  #scriptStarted = false;
  scriptDone: Promise<void> | undefined;
  scriptError: unknown;
  #seq = 0;
  #ping: NodeJS.Timeout | undefined;

  constructor(init: FakeSessionInit) {
    this.id = init.id;
    this.environmentId = init.environmentId;
    this.init = init;
    this.agent = new ScriptedAgent(this);
  }

  view(): Record<string, unknown> {
    return {
      type: 'session',
      id: this.id,
      environment_id: this.environmentId,
      status: this.status,
      title: null,
      metadata: {},
      archived_at: null,
      created_at: now(),
      updated_at: now(),
      vault_ids: [],
      agent: { type: 'agent', id: 'agent_fake', skills: this.init.skills ?? [], tools: [{ type: 'agent_toolset_20260401' }], mcp_servers: [] },
      resources: (this.init.memoryStores ?? []).map((s) => ({
        type: 'memory_store',
        memory_store_id: s.memory_store_id,
        name: s.name,
        access: s.access ?? 'read_write',
        mount_path: `/mnt/memory/${s.name.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`,
      })),
    };
  }

  /** Appends an event to the history and sends it to every live stream. */
  emit(event: Omit<FakeEvent, 'id' | 'processed_at'> & { id?: string }): FakeEvent {
    const full = { id: event.id ?? `sevt_${this.id.slice(-6)}_${++this.#seq}`, processed_at: now(), ...event } as FakeEvent;
    this.events.push(full);
    this.#broadcast(full);
    for (const w of [...this.#waiters]) {
      if (w.match(full)) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        w.resolve(full);
      }
    }
    return full;
  }

  /** Sends a raw frame on the streams without storing it (malformed events). */
  broadcastRaw(type: string, data: string): void {
    for (const res of this.#subscribers) res.write(`event: ${type}\ndata: ${data}\n\n`);
  }

  #broadcast(event: FakeEvent): void {
    const frame = `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
    const twice = this.duplicateNext && event.type === 'agent.tool_use';
    if (twice) this.duplicateNext = false;
    for (const res of this.#subscribers) {
      res.write(frame);
      if (twice) res.write(frame);
    }
  }

  waitFor(match: (e: FakeEvent) => boolean): Promise<FakeEvent> {
    const found = this.events.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => this.#waiters.push({ match, resolve }));
  }

  subscribe(res: ServerResponse): void {
    this.streamsOpened++;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.write('event: ping\ndata: {"type":"ping"}\n\n');
    this.#subscribers.add(res);
    res.on('close', () => this.#subscribers.delete(res));
    if (!this.#ping) {
      this.#ping = setInterval(() => {
        for (const r of this.#subscribers) r.write('event: ping\ndata: {"type":"ping"}\n\n');
      }, 2_000);
      this.#ping.unref();
    }
    if (!this.#scriptStarted && this.init.script) {
      this.#scriptStarted = true;
      // Let the worker list the history first, as it would race the model in reality.
      this.scriptDone = new Promise<void>((r) => setTimeout(r, 20)).then(() =>
        this.init.script!(this.agent).catch((err) => {
          this.scriptError = err;
        }),
      );
    }
  }

  get subscriberCount(): number {
    return this.#subscribers.size;
  }

  /** Fault: drop every live stream connection. */
  dropStreams(): void {
    for (const res of this.#subscribers) res.destroy();
    this.#subscribers.clear();
  }

  close(): void {
    if (this.#ping) clearInterval(this.#ping);
    for (const res of this.#subscribers) res.end();
    this.#subscribers.clear();
  }

  /** Validates and stores the events a worker posts (section 9.2 #10). */
  accept(body: unknown, worker: boolean): FakeEvent[] {
    if (this.archived) throw badRequest('Cannot send events to archived session');
    const events = (body as { events?: unknown })?.events;
    if (!Array.isArray(events) || events.length === 0) throw badRequest('events: must be a non-empty array');
    const out: FakeEvent[] = [];
    events.forEach((ev: Record<string, unknown>, i) => {
      const type = ev?.type;
      if (type === 'user.tool_result' || type === 'user.custom_tool_result') {
        const idKey = type === 'user.tool_result' ? 'tool_use_id' : 'custom_tool_use_id';
        const useId = ev[idKey];
        if (typeof useId !== 'string') throw badRequest(`events.${i}.${idKey}: required`);
        this.resultPosts.set(useId, (this.resultPosts.get(useId) ?? 0) + 1);
        const use = this.events.find((e) => e.id === useId);
        const useType = type === 'user.tool_result' ? 'agent.tool_use' : 'agent.custom_tool_use';
        if (!use || use.type !== useType) return this.#refuse(`events.${i}.${idKey}: no ${useType} event ${useId} in this session`);
        if (this.events.some((e) => e.type === type && e[idKey] === useId)) {
          return this.#refuse(`events.${i}.${idKey}: ${useId} has already been answered`);
        }
        if (use.evaluated_permission === 'ask' && !this.events.some((e) => e.type === 'user.tool_confirmation' && e.tool_use_id === useId && e.result === 'allow')) {
          return this.#refuse(`events.${i}.tool_use_id: ${useId} has evaluated_permission "ask" and no user.tool_confirmation with result "allow" has been posted`);
        }
        const content = ev.content;
        if (!Array.isArray(content)) return this.#refuse(`events.${i}.content: required`);
        content.forEach((b: { type?: string; text?: unknown }, j) => {
          if (b?.type === 'text' && (typeof b.text !== 'string' || b.text.length < 1)) {
            this.#refuse(`events.${i}.content.${j}.text: minimum string length is 1`);
          }
        });
        if (typeof ev.is_error !== 'boolean') return this.#refuse(`events.${i}.is_error: required`);
      } else if (worker) {
        throw new FakeHttpError(403, 'permission_error', `events.${i}.type: a worker credential may only post tool results`);
      } else if (type === 'user.message') {
        const pending = this.pendingToolUses();
        if (pending.length > 0) throw badRequest(`waiting on responses to events [${pending.join(', ')}]`);
      }
      out.push(ev as FakeEvent);
    });
    return out.map((ev) => this.emit(ev as FakeEvent));
  }

  #refuse(message: string): never {
    this.refusedPosts.push(message);
    throw badRequest(message);
  }

  pendingToolUses(): string[] {
    return this.events
      .filter((e) => e.type === 'agent.tool_use' || e.type === 'agent.custom_tool_use')
      .filter((u) => !this.events.some((e) => (e.tool_use_id ?? e.custom_tool_use_id) === u.id && e.type !== 'user.tool_confirmation'))
      .map((e) => e.id);
  }

  /** Result events answering `useId`. */
  resultsFor(useId: string): FakeEvent[] {
    return this.events.filter((e) => (e.type === 'user.tool_result' && e.tool_use_id === useId) || (e.type === 'user.custom_tool_result' && e.custom_tool_use_id === useId));
  }

  nextId(): string {
    return `sevt_${this.id.slice(-6)}_${++this.#seq}`;
  }
}

/** What a tool call of the scripted agent gives back. */
export interface ScriptedCall {
  id: string;
  /** Resolves with the worker's result event. */
  result: Promise<FakeEvent>;
}

/** The model's stand-in: emits tool calls and turn ends the way the real agent loop does. */
export class ScriptedAgent {
  constructor(private readonly session: FakeSession) {}

  #running(): void {
    if (this.session.status !== 'running') {
      this.session.status = 'running';
      this.session.emit({ type: 'session.status_running' });
    }
  }

  /** Emits `agent.tool_use` (or `agent.custom_tool_use`), then an idle `requires_action` on it. */
  call(name: string, input: unknown, options: { permission?: 'allow' | 'ask' | 'deny'; custom?: boolean } = {}): ScriptedCall {
    this.#running();
    const type = options.custom ? 'agent.custom_tool_use' : 'agent.tool_use';
    const ev = this.session.emit({ type, name, input, ...(options.permission ? { evaluated_permission: options.permission } : {}), session_thread_id: null });
    this.session.status = 'idle';
    this.session.emit({ type: 'session.status_idle', stop_reason: { type: 'requires_action', event_ids: [ev.id] } });
    const idKey = options.custom ? 'custom_tool_use_id' : 'tool_use_id';
    const result = this.session.waitFor((e) => e.type === (options.custom ? 'user.custom_tool_result' : 'user.tool_result') && e[idKey] === ev.id);
    return { id: ev.id, result: result.then((r) => (this.#running(), r)) };
  }

  /** Runs one tool call and returns the text of its result. */
  async tool(name: string, input: unknown, options: { permission?: 'allow' | 'ask' | 'deny' } = {}): Promise<{ text: string; isError: boolean; id: string }> {
    const call = this.call(name, input, options);
    const r = await call.result;
    const text = (r.content as Array<{ type: string; text?: string }>).map((b) => b.text ?? '').join('');
    return { text, isError: r.is_error === true, id: call.id };
  }

  /** The app posts a confirmation for an `ask` call. */
  confirm(toolUseId: string, result: 'allow' | 'deny'): void {
    this.session.emit({ type: 'user.tool_confirmation', tool_use_id: toolUseId, result });
  }

  message(text: string): void {
    this.#running();
    this.session.emit({ type: 'agent.message', content: [{ type: 'text', text }] });
  }

  endTurn(): void {
    this.session.status = 'idle';
    this.session.emit({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
  }

  terminate(): void {
    this.session.status = 'terminated';
    this.session.emit({ type: 'session.status_terminated' });
  }
}

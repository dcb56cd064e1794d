import { join } from 'node:path';
import type { SpanRecord } from '../protocol/index.js';
import { noopLogger, type Logger } from '../util/logger.js';
import { readJsonFile, writeFileAtomic, type KeyedQueue } from './atomic-file.js';

/** A stored span: the wire shape plus where it came from. */
export interface StoredSpan extends SpanRecord {
  source: 'control-plane' | 'runner';
  runnerId?: string;
}

const TRACE_ID = /^[0-9a-f]{32}$/;

/** How long new spans wait in memory before they are written, so one call's spans land in one write. */
const WRITE_DELAY_MS = 250;

/**
 * Spans by trace id, one JSON file per trace under `traces/`. A span seen twice
 * (a runner resending after a reconnect) is kept once, by span id.
 *
 * Spans are diagnostics, not records anything depends on: they are gathered in
 * memory for a moment (a call's spans arrive in a few batches) and written
 * together, without fsync, off the path of the calls; a read flushes its
 * trace first, and `flush()` writes everything (stop).
 */
export class TraceStore {
  readonly #dir: string;
  readonly #queue: KeyedQueue;
  readonly #pending = new Map<string, StoredSpan[]>();
  #timer: NodeJS.Timeout | undefined;

  readonly #logger: Logger;

  constructor(dir: string, queue: KeyedQueue, logger: Logger = noopLogger) {
    this.#dir = dir;
    this.#queue = queue;
    this.#logger = logger;
  }

  /** Adds spans, grouped by their trace ids; they are written within WRITE_DELAY_MS. */
  add(spans: StoredSpan[]): void {
    for (const span of spans) {
      if (!TRACE_ID.test(span.traceId)) continue;
      const list = this.#pending.get(span.traceId) ?? [];
      list.push(span);
      this.#pending.set(span.traceId, list);
    }
    if (this.#pending.size > 0 && !this.#timer) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.flush().catch((err: unknown) => this.#logger.error({ err }, 'could not store spans; check the data dir is writable'));
      }, WRITE_DELAY_MS);
      this.#timer.unref();
    }
  }

  /** Writes the spans held in memory (of one trace, or all); resolves once written. */
  async flush(traceId?: string): Promise<void> {
    const ids = traceId === undefined ? [...this.#pending.keys()] : this.#pending.has(traceId) ? [traceId] : [];
    if (traceId === undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    await Promise.all(ids.map((id) => this.#write(id)));
  }

  #write(traceId: string): Promise<void> {
    const list = this.#pending.get(traceId) ?? [];
    this.#pending.delete(traceId);
    const path = this.#path(traceId);
    return this.#queue.run(path, async () => {
      const file = (await readJsonFile<{ spans: StoredSpan[] }>(path)) ?? { spans: [] };
      const seen = new Set(file.spans.map((s) => s.spanId));
      let changed = false;
      for (const span of list) {
        if (seen.has(span.spanId)) continue;
        seen.add(span.spanId);
        file.spans.push(span);
        changed = true;
      }
      if (changed) await writeFileAtomic(path, JSON.stringify(file), 0o600, { durable: false });
    });
  }

  /** The spans of a trace, oldest first; an empty list for an unknown or malformed id. */
  async get(traceId: string): Promise<StoredSpan[]> {
    if (!TRACE_ID.test(traceId)) return [];
    await this.flush(traceId);
    const path = this.#path(traceId);
    // Read through the queue so a read never sees a trace half-way through an add.
    const file = await this.#queue.run(path, () => readJsonFile<{ spans: StoredSpan[] }>(path));
    const spans = file?.spans ?? [];
    return spans.sort((a, b) => (BigInt(a.startTimeUnixNano) < BigInt(b.startTimeUnixNano) ? -1 : 1));
  }

  #path(traceId: string): string {
    return join(this.#dir, `${traceId}.json`);
  }
}

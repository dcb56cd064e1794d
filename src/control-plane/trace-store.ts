import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SpanRecord } from '../protocol/index.js';
import { noopLogger, type Logger } from '../util/logger.js';

/** A stored span: the wire shape plus where it came from. */
export interface StoredSpan extends SpanRecord {
  source: 'control-plane' | 'runner';
  runnerId?: string;
}

const TRACE_ID = /^[0-9a-f]{32}$/;

/** How long new spans wait in memory before they are written, so one call's spans land in one write. */
const WRITE_DELAY_MS = 250;

/**
 * Spans by trace id, one JSON-lines file per trace under `traces/`
 * (`<traceId>.jsonl`, a span per line). A span seen twice (a runner resending
 * after a reconnect) is returned once, by span id.
 *
 * Spans are diagnostics, not records anything depends on: they are gathered in
 * memory for a moment (a call's spans arrive in a few batches) and appended
 * together in one write without fsync, off the path of the calls; a read
 * flushes its trace first, and `flush()` writes everything (stop). A torn last
 * line (a crash mid-write) is skipped when read. Appends to one trace are
 * ordered (one chain per trace), so a read after a flush sees every span.
 */
export class TraceStore {
  readonly #dir: string;
  readonly #logger: Logger;
  readonly #pending = new Map<string, StoredSpan[]>();
  /** The last append asked for per trace, so appends and reads of one trace keep their order. */
  readonly #writing = new Map<string, Promise<void>>();
  #timer: NodeJS.Timeout | undefined;

  constructor(dir: string, logger: Logger = noopLogger) {
    this.#dir = dir;
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

  /**
   * Writes the spans held in memory (of one trace, or all); resolves once
   * written, and after any earlier append of those traces.
   * @throws when the data dir cannot be written (those spans are dropped).
   */
  async flush(traceId?: string): Promise<void> {
    const ids = traceId === undefined ? [...new Set([...this.#pending.keys(), ...this.#writing.keys()])] : [traceId];
    if (traceId === undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    await Promise.all(ids.map((id) => this.#append(id)));
  }

  #append(traceId: string): Promise<void> {
    const list = this.#pending.get(traceId);
    this.#pending.delete(traceId);
    const prev = this.#writing.get(traceId) ?? Promise.resolve();
    const next = list ? prev.catch(() => undefined).then(() => appendFile(this.#path(traceId), list.map((s) => JSON.stringify(s) + '\n').join(''), { mode: 0o600 })) : prev;
    this.#writing.set(traceId, next);
    void next
      .catch(() => undefined)
      .then(() => {
        if (this.#writing.get(traceId) === next) this.#writing.delete(traceId);
      });
    return next;
  }

  /** The spans of a trace, oldest first; an empty list for an unknown or malformed id. */
  async get(traceId: string): Promise<StoredSpan[]> {
    if (!TRACE_ID.test(traceId)) return [];
    await this.flush(traceId).catch(() => undefined);
    const text = await readFile(this.#path(traceId), 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    });
    const byId = new Map<string, StoredSpan>();
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        const span = JSON.parse(line) as StoredSpan;
        if (!byId.has(span.spanId)) byId.set(span.spanId, span);
      } catch {
        // a torn last line from a crash mid-write
      }
    }
    return [...byId.values()].sort((a, b) => (BigInt(a.startTimeUnixNano) < BigInt(b.startTimeUnixNano) ? -1 : 1));
  }

  #path(traceId: string): string {
    return join(this.#dir, `${traceId}.jsonl`);
  }
}

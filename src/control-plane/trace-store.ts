import { appendFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
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
 * together in one synchronous write without fsync, off the path of the calls;
 * a read flushes its trace first, and `flush()` writes everything (stop). A
 * torn last line (a crash mid-write) is skipped when read.
 */
export class TraceStore {
  readonly #dir: string;
  readonly #logger: Logger;
  readonly #pending = new Map<string, StoredSpan[]>();
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
        try {
          this.flush();
        } catch (err) {
          this.#logger.error({ err }, 'could not store spans; check the data dir is writable');
        }
      }, WRITE_DELAY_MS);
      this.#timer.unref();
    }
  }

  /**
   * Writes the spans held in memory (of one trace, or all).
   * @throws when the data dir cannot be written (the spans are dropped).
   */
  flush(traceId?: string): void {
    const ids = traceId === undefined ? [...this.#pending.keys()] : this.#pending.has(traceId) ? [traceId] : [];
    if (traceId === undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    let failed: unknown;
    for (const id of ids) {
      const list = this.#pending.get(id) ?? [];
      this.#pending.delete(id);
      try {
        appendFileSync(this.#path(id), list.map((s) => JSON.stringify(s) + '\n').join(''), { mode: 0o600 });
      } catch (err) {
        failed ??= err;
      }
    }
    if (failed) throw failed;
  }

  /** The spans of a trace, oldest first; an empty list for an unknown or malformed id. */
  async get(traceId: string): Promise<StoredSpan[]> {
    if (!TRACE_ID.test(traceId)) return [];
    this.flush(traceId);
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

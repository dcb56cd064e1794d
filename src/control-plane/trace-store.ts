import { closeSync, constants, fstatSync, openSync, readSync, writeSync } from 'node:fs';
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

/** The store's file inside its directory. */
export const SPAN_LOG_FILE = 'spans.jsonl';

/** Where one stored line is in the log. */
type Extent = [offset: number, length: number];

/**
 * Spans by trace id, in one append-only JSON-lines file under `traces/`
 * (`spans.jsonl`, a span per line, every trace together). A span seen twice (a
 * runner resending after a reconnect) is returned once, by span id.
 *
 * Spans are diagnostics, not records anything depends on: they are gathered in
 * memory for a moment (a call's spans arrive in a few batches) and appended
 * together in one write without fsync, off the path of the calls; a read
 * flushes first, and `flush()` writes everything (stop). One file for all
 * traces: a file per trace made every call create a file, which costs the
 * control plane a millisecond or more on a busy ext4.
 *
 * Reads find a trace's lines through an index (trace id → where its lines
 * are) that is built by one pass over the file on the first read, then kept up
 * to date by each append; a control plane that is never asked for a trace
 * never builds it. A torn last line (a crash mid-write) is skipped when read.
 * Files of the earlier layout (`<traceId>.jsonl`, one per trace) are still read.
 */
export class TraceStore {
  readonly #dir: string;
  readonly #file: string;
  readonly #logger: Logger;
  readonly #pending = new Map<string, StoredSpan[]>();
  #timer: NodeJS.Timeout | undefined;
  #fd = -1;
  #size = 0;
  #index: Map<string, Extent[]> | undefined;
  #closed = false;

  constructor(dir: string, logger: Logger = noopLogger) {
    this.#dir = dir;
    this.#file = join(dir, SPAN_LOG_FILE);
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
   * Writes the spans held in memory in one append (synchronous: a page-cache
   * write of a few kilobytes, where the thread pool costs more in hops).
   * @throws when the data dir cannot be written (those spans are dropped).
   */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.size === 0) return;
    const batch = [...this.#pending];
    this.#pending.clear();
    if (this.#closed) return;
    this.#open();
    const lines: Array<[string, Buffer]> = [];
    for (const [traceId, spans] of batch) for (const s of spans) lines.push([traceId, Buffer.from(`${JSON.stringify(s)}\n`)]);
    const data = Buffer.concat(lines.map(([, b]) => b));
    for (let done = 0; done < data.length; ) done += writeSync(this.#fd, data, done, data.length - done, this.#size + done);
    let at = this.#size;
    this.#size += data.length;
    if (!this.#index) return;
    for (const [traceId, line] of lines) {
      const list = this.#index.get(traceId) ?? [];
      list.push([at, line.length]);
      this.#index.set(traceId, list);
      at += line.length;
    }
  }

  /** The spans of a trace, oldest first; an empty list for an unknown or malformed id. */
  async get(traceId: string): Promise<StoredSpan[]> {
    if (!TRACE_ID.test(traceId)) return [];
    await this.flush().catch(() => undefined);
    const legacy = await readFile(join(this.#dir, `${traceId}.jsonl`), 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    });
    const lines = legacy.split('\n');
    if (!this.#closed) {
      this.#open();
      for (const [offset, length] of this.#buildIndex().get(traceId) ?? []) {
        const buf = Buffer.alloc(length);
        readSync(this.#fd, buf, 0, length, offset);
        lines.push(buf.toString('utf8'));
      }
    }
    const byId = new Map<string, StoredSpan>();
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        const span = JSON.parse(line) as StoredSpan;
        if (!byId.has(span.spanId)) byId.set(span.spanId, span);
      } catch {
        // a torn last line from a crash mid-write
      }
    }
    return [...byId.values()].sort((a, b) => (BigInt(a.startTimeUnixNano) < BigInt(b.startTimeUnixNano) ? -1 : 1));
  }

  /** Writes what is held and closes the file; later spans are dropped. */
  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }

  #open(): void {
    if (this.#fd >= 0) return;
    const fd = openSync(this.#file, constants.O_RDWR | constants.O_CREAT, 0o600);
    let size = fstatSync(fd).size;
    if (size > 0) {
      // A torn last line (a crash mid-write) gets its own line end, so the next span does not join it.
      const last = Buffer.alloc(1);
      readSync(fd, last, 0, 1, size - 1);
      if (last[0] !== 10) size += writeSync(fd, '\n', size);
    }
    this.#fd = fd;
    this.#size = size;
  }

  /** One pass over the log: where each trace's lines are. */
  #buildIndex(): Map<string, Extent[]> {
    if (this.#index) return this.#index;
    const index = new Map<string, Extent[]>();
    const chunk = Buffer.alloc(1 << 20);
    let carry = Buffer.alloc(0);
    let base = 0;
    for (let pos = 0; pos < this.#size; ) {
      const n = readSync(this.#fd, chunk, 0, Math.min(chunk.length, this.#size - pos), pos);
      if (n === 0) break;
      pos += n;
      const buf = carry.length ? Buffer.concat([carry, chunk.subarray(0, n)]) : chunk.subarray(0, n);
      let start = 0;
      for (let nl = buf.indexOf(10); nl >= 0; nl = buf.indexOf(10, start)) {
        const traceId = traceIdOf(buf.subarray(start, nl));
        if (traceId) {
          const list = index.get(traceId) ?? [];
          list.push([base + start, nl + 1 - start]);
          index.set(traceId, list);
        }
        start = nl + 1;
      }
      base += start;
      carry = Buffer.from(buf.subarray(start));
    }
    this.#index = index;
    return index;
  }
}

/** The trace id of one stored line, or undefined for a torn one. */
function traceIdOf(line: Buffer): string | undefined {
  try {
    const id = (JSON.parse(line.toString('utf8')) as { traceId?: unknown }).traceId;
    return typeof id === 'string' && TRACE_ID.test(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

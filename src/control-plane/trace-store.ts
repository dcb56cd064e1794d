import { join } from 'node:path';
import type { SpanRecord } from '../protocol/index.js';
import { readJsonFile, writeFileAtomic, type KeyedQueue } from './atomic-file.js';

/** A stored span: the wire shape plus where it came from. */
export interface StoredSpan extends SpanRecord {
  source: 'control-plane' | 'runner';
  runnerId?: string;
}

const TRACE_ID = /^[0-9a-f]{32}$/;

/**
 * Spans by trace id, one JSON file per trace under `traces/`. A span seen twice
 * (a runner resending after a reconnect) is kept once, by span id.
 */
export class TraceStore {
  readonly #dir: string;
  readonly #queue: KeyedQueue;

  constructor(dir: string, queue: KeyedQueue) {
    this.#dir = dir;
    this.#queue = queue;
  }

  /** Adds spans, grouped by their trace ids; resolves once on disk. */
  async add(spans: StoredSpan[]): Promise<void> {
    const byTrace = new Map<string, StoredSpan[]>();
    for (const span of spans) {
      if (!TRACE_ID.test(span.traceId)) continue;
      const list = byTrace.get(span.traceId) ?? [];
      list.push(span);
      byTrace.set(span.traceId, list);
    }
    await Promise.all(
      [...byTrace].map(([traceId, list]) => {
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
          if (changed) await writeFileAtomic(path, JSON.stringify(file), 0o600);
        });
      }),
    );
  }

  /** The spans of a trace, oldest first; an empty list for an unknown or malformed id. */
  async get(traceId: string): Promise<StoredSpan[]> {
    if (!TRACE_ID.test(traceId)) return [];
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

import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { CallStatus, ToolCall, ToolResultContent } from '../protocol/index.js';
import { readJsonFile, writeFileAtomic, type KeyedQueue } from './atomic-file.js';

/** A tool call as the control plane keeps it; the HTTP API shows `publicCall(record)`. */
export interface CallRecord {
  id: string;
  runnerId: string;
  name: string;
  sessionId: string | null;
  status: CallStatus | 'running';
  content: ToolResultContent | null;
  isError: boolean | null;
  durationMs: number | null;
  traceId: string | null;
  createdAt: string;
  endedAt: string | null;
  /** The runner sent `tool.accepted`; until then the call is sent again on reconnect. */
  accepted: boolean;
  /** A cancel was asked for; it is sent again on reconnect while the call runs. */
  cancelRequested: boolean;
  /** The unsigned `tool.call` (kept until accepted, to send it again). */
  pending: ToolCall | null;
}

/** The record as the HTTP API returns it: without the delivery bookkeeping. */
export type PublicCall = Omit<CallRecord, 'accepted' | 'cancelRequested' | 'pending'>;

export function publicCall(r: CallRecord): PublicCall {
  return {
    id: r.id,
    runnerId: r.runnerId,
    name: r.name,
    sessionId: r.sessionId,
    status: r.status,
    content: r.content,
    isError: r.isError,
    durationMs: r.durationMs,
    traceId: r.traceId,
    createdAt: r.createdAt,
    endedAt: r.endedAt,
  };
}

/**
 * Tool-call records, one JSON file each under `calls/`, all held in memory
 * after start. Writes are atomic and ordered per call.
 */
export class CallStore {
  readonly #dir: string;
  readonly #queue: KeyedQueue;
  readonly #records = new Map<string, CallRecord>();

  private constructor(dir: string, queue: KeyedQueue) {
    this.#dir = dir;
    this.#queue = queue;
  }

  static async load(dir: string, queue: KeyedQueue): Promise<CallStore> {
    const store = new CallStore(dir, queue);
    for (const name of await readdir(dir)) {
      // Leftover temporary files (`*.tmp`) of a write cut short by a crash are skipped.
      if (!name.endsWith('.json')) continue;
      const record = await readJsonFile<CallRecord>(join(dir, name));
      if (record) store.#records.set(record.id, record);
    }
    return store;
  }

  get(id: string): CallRecord | undefined {
    return this.#records.get(id);
  }

  /** Every record of one runner. */
  forRunner(runnerId: string): CallRecord[] {
    return [...this.#records.values()].filter((r) => r.runnerId === runnerId);
  }

  /** Resolves once every write of this call asked for so far is on disk. */
  settled(id: string): Promise<void> {
    return this.#queue.run(join(this.#dir, `${id}.json`), async () => undefined);
  }

  /** Holds the record (a copy) in memory only; a later save() writes it. */
  put(record: CallRecord): void {
    this.#records.set(record.id, structuredClone(record));
  }

  /** Stores the record (a copy) and resolves once it is on disk. */
  save(record: CallRecord): Promise<void> {
    const copy = structuredClone(record);
    this.#records.set(record.id, copy);
    // Call ids are restricted to [A-Za-z0-9_.:-] by the protocol, so they are safe file names.
    const path = join(this.#dir, `${record.id}.json`);
    return this.#queue.run(path, () => writeFileAtomic(path, JSON.stringify(this.#records.get(record.id)), 0o600));
  }
}

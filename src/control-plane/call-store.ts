import { closeSync, constants, fdatasync, openSync, writeSync } from 'node:fs';
import { readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { CallStatus, ToolCall, ToolResultContent } from '../protocol/index.js';
import { syncDir } from '../util/atomic-file.js';
import { RunnerError } from '../util/errors.js';
import { readJsonFile } from './atomic-file.js';

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

/** The store's file inside its directory. */
export const CALL_LOG_FILE = 'calls.jsonl';

/**
 * Reads the records of a call log (`calls/calls.jsonl`): the last line of each
 * call id wins, and a torn line (a crash mid-write) is skipped.
 */
export function parseCallLog(text: string): Map<string, CallRecord> {
  const records = new Map<string, CallRecord>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    let record: CallRecord;
    try {
      record = JSON.parse(line) as CallRecord;
    } catch {
      continue;
    }
    if (record && typeof record.id === 'string') records.set(record.id, record);
  }
  return records;
}

/**
 * Tool-call records, all held in memory, kept on disk as one append-only JSON
 * lines file (`calls/calls.jsonl`): each save appends the whole record, and on
 * load the last line of each id wins.
 *
 * One append per save, where a file per call (temporary file, fsync, rename,
 * directory fsync) cost every call eight trips through the thread pool and a
 * file creation, which on a busy ext4 takes a millisecond or more of the
 * control plane's time. A save is written synchronously (in the page cache at
 * once: a crash of the process keeps it) and is on disk when its promise
 * resolves; saves made while an fdatasync runs share the next one.
 *
 * The file is rewritten (compacted) at load, atomically: one line per call.
 * While the control plane runs it grows by a line per save (about two a call),
 * as the file-per-call layout grew by a file per call.
 * Records of the earlier layout (`calls/<id>.json`, one file each) are read
 * then, folded into the log and removed once it is on disk.
 */
export class CallStore {
  readonly #dir: string;
  readonly #file: string;
  readonly #records = new Map<string, CallRecord>();
  #fd = -1;
  #size = 0;
  /** Saves written so far, and how many of them an fdatasync has covered. */
  #written = 0;
  #durable = 0;
  #syncing: Promise<void> | undefined;
  #syncQueued: Promise<void> | undefined;

  private constructor(dir: string) {
    this.#dir = dir;
    this.#file = join(dir, CALL_LOG_FILE);
  }

  /**
   * Loads every record and compacts the log.
   * @throws RunnerError `io` when the log cannot be rewritten; the error of
   *   reading a file of the earlier layout as it is (nothing is removed then).
   */
  static async load(dir: string): Promise<CallStore> {
    const store = new CallStore(dir);
    // Files of the earlier layout, removed once the compacted log holds their records.
    const legacy: string[] = [];
    for (const name of await readdir(dir)) {
      // Temporary files of a write cut short by a crash (`*.tmp`, either layout) held nothing committed.
      if (name.endsWith('.tmp')) legacy.push(name);
      if (!name.endsWith('.json')) continue;
      const record = await readJsonFile<CallRecord>(join(dir, name));
      if (record) store.#records.set(record.id, record);
      legacy.push(name);
    }
    const text = await readFile(store.#file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    });
    // The log is newer than any file of the earlier layout: its lines win.
    for (const [id, record] of parseCallLog(text)) store.#records.set(id, record);
    await store.#compact();
    await Promise.all(legacy.map((n) => rm(join(dir, n), { force: true })));
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
  settled(_id: string): Promise<void> {
    return this.#written > this.#durable ? this.#sync() : Promise.resolve();
  }

  /** Holds the record (a copy) in memory only; a later save() writes it. */
  put(record: CallRecord): void {
    this.#records.set(record.id, structuredClone(record));
  }

  /**
   * Stores the record (a copy) and resolves once it is on disk.
   * Rejects with RunnerError `io` when it cannot be written or synced.
   */
  save(record: CallRecord): Promise<void> {
    const copy = structuredClone(record);
    this.#records.set(record.id, copy);
    try {
      this.#append(Buffer.from(`${JSON.stringify(copy)}\n`));
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#sync();
  }

  /** Syncs what was written and closes the file. */
  async close(): Promise<void> {
    if (this.#fd < 0) return;
    await this.settled('');
    closeSync(this.#fd);
    this.#fd = -1;
  }

  /**
   * Appends one line at the end of the log. A failed write leaves the size as
   * it was, so the next line overwrites the torn one.
   */
  #append(line: Buffer): void {
    if (this.#fd < 0) throw new RunnerError('io', `the call store ${this.#file} is closed; restart the control plane`);
    try {
      for (let done = 0; done < line.length; ) done += writeSync(this.#fd, line, done, line.length - done, this.#size + done);
    } catch (err) {
      throw new RunnerError('io', `cannot write the call store ${this.#file} (${(err as NodeJS.ErrnoException).code}); free disk space or check the data dir`, { cause: err });
    }
    this.#size += line.length;
    this.#written++;
  }

  /** One fdatasync for every save made before it starts; saves made while it runs share the next. */
  #sync(): Promise<void> {
    if (!this.#syncing) {
      const upTo = this.#written;
      const fd = this.#fd;
      this.#syncing = new Promise<void>((resolve, reject) => {
        fdatasync(fd, (err) => {
          this.#syncing = undefined;
          if (err) {
            reject(new RunnerError('io', `cannot sync the call store ${this.#file} (${err.code}); check the disk and the data dir`, { cause: err }));
            return;
          }
          this.#durable = Math.max(this.#durable, upTo);
          resolve();
        });
      });
      return this.#syncing;
    }
    this.#syncQueued ??= this.#syncing
      .catch(() => undefined)
      .then(() => {
        this.#syncQueued = undefined;
        return this.#sync();
      });
    return this.#syncQueued;
  }

  /** Writes one line per record to a fresh file, syncs it, swaps it in and appends to it from now on. */
  async #compact(): Promise<void> {
    const tmp = `${this.#file}.compact`;
    const fd = openSync(tmp, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o600);
    let size = 0;
    try {
      for (const record of this.#records.values()) {
        const line = Buffer.from(`${JSON.stringify(record)}\n`);
        for (let done = 0; done < line.length; ) done += writeSync(fd, line, done, line.length - done, size + done);
        size += line.length;
      }
      await new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
      await rename(tmp, this.#file);
      await syncDir(this.#dir);
    } catch (err) {
      closeSync(fd);
      throw new RunnerError('io', `cannot rewrite the call store ${this.#file} (${(err as NodeJS.ErrnoException).code}); free disk space or check the data dir`, { cause: err });
    }
    this.#fd = fd;
    this.#size = size;
  }
}

import { constants, writeSync } from 'node:fs';
import { open, readFile, rename, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { ToolResultMessageSchema, type ToolResultMessage } from '../protocol/index.js';
import { RunnerError } from '../util/errors.js';

/**
 * The runner's durable record of tool calls: which call ids it has seen, and
 * the results the control plane has not acknowledged yet (the outbox).
 *
 * One append-only JSON-lines file in the state directory. Every record is
 * written synchronously (so it is in the kernel's page cache: a crash of the
 * runner process loses nothing) before the caller goes on. `sync()` makes what
 * was written durable (fdatasync, one for every caller waiting at that moment);
 * the runner starts it for each result and sends the result meanwhile:
 *   {"op":"begin","id":…,"at":…}          a call was accepted (never run it twice)
 *   {"op":"done","id":…,"at":…,"result":…} its result, kept until acknowledged
 *   {"op":"ack","ids":[…],"at":…}         the control plane holds these results
 * A torn last line (a crash mid-write) is ignored on load. The file is compacted
 * on open: acknowledged calls older than the retention are dropped.
 */

export type CallState =
  | { state: 'new' }
  | { state: 'running' }
  | { state: 'done'; result: ToolResultMessage; acked: boolean };

interface Entry {
  at: number;
  done: boolean;
  acked: boolean;
  /** Unacknowledged results stay in memory; acknowledged ones are read back from disk. */
  result?: ToolResultMessage;
  offset?: number;
  length?: number;
}

export interface CallJournalOptions {
  /** How long finished calls are remembered (to answer a repeated id). */
  retentionMs: number;
  now?: () => number;
  /** Told the outbox depth whenever it changes (the outbox depth gauge). */
  onDepth?: (depth: number) => void;
}

export class CallJournal {
  private readonly entries = new Map<string, Entry>();
  private size = 0;
  /**
   * Unacknowledged results, kept as a count: the journal remembers every call
   * of the retention window, and counting them on each write cost every call
   * time in proportion to the runner's history.
   */
  private outbox = 0;
  /** The fdatasync running now, and the one queued behind it for writes made since it started. */
  private syncing: Promise<void> | undefined;
  private syncQueued: Promise<void> | undefined;
  /** Calls that were running when the runner stopped: the daemon fails them. */
  readonly orphans: string[] = [];

  private constructor(
    private readonly file: string,
    private fh: FileHandle,
    private readonly options: Required<CallJournalOptions>,
  ) {}

  /** Opens (and compacts) the journal at `<stateDir>/calls.jsonl`. */
  static async open(stateDir: string, options: CallJournalOptions): Promise<CallJournal> {
    const file = path.join(stateDir, 'calls.jsonl');
    const opts = { now: Date.now, onDepth: () => undefined, ...options };
    const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    });
    const live = replay(text);
    const cutoff = opts.now() - opts.retentionMs;
    // Compaction: rewrite only what still matters, then swap the files atomically.
    const tmp = `${file}.compact`;
    const out = await open(tmp, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o600);
    const journal = new CallJournal(file, out, opts);
    for (const [id, rec] of live) {
      if (rec.acked && rec.at < cutoff) continue;
      journal.append({ op: 'begin', id, at: rec.at });
      if (rec.result) journal.append({ op: 'done', id, at: rec.at, result: rec.result }, id);
      if (rec.acked) journal.markAcked(id);
      if (!rec.result) journal.orphans.push(id);
    }
    const acked = [...journal.entries].filter(([, e]) => e.acked).map(([id]) => id);
    if (acked.length) journal.append({ op: 'ack', ids: acked, at: opts.now() });
    await out.sync();
    await rename(tmp, file);
    return journal;
  }

  /** What the journal knows of a call id. */
  async lookup(id: string): Promise<CallState> {
    const e = this.entries.get(id);
    if (!e) return { state: 'new' };
    if (!e.done) return { state: 'running' };
    return { state: 'done', acked: e.acked, result: e.result ?? (await this.readBack(e)) };
  }

  /**
   * Records that a call was accepted, before it runs. Written, not synced: a
   * runner crash keeps it; only a power loss during the call can lose it, and
   * then the call's result is lost too and the control plane sends it again.
   * The fsync costs milliseconds on the hot path of every call; see docs/protocol.md.
   * @throws RunnerError `io` when it cannot be written (the call must not run).
   */
  begin(id: string): void {
    this.append({ op: 'begin', id, at: this.options.now() });
  }

  /**
   * Stores a result in the outbox (written: a crash of the runner keeps it).
   * Call `sync()` for durability against a power loss; the runner sends the
   * result while that runs, since the control plane's copy and this one only
   * both go missing if the machine loses power before the sync lands, which is
   * the same outcome as losing power while the call ran.
   * `resultJson`, when given, is JSON.stringify(result), made once by the
   * caller for the journal and the wire: a result can carry MBs of output.
   * @throws RunnerError `io` when it cannot be written (the result is not stored).
   */
  complete(result: ToolResultMessage, resultJson?: string): void {
    this.append({ op: 'done', id: result.callId, at: this.options.now(), result }, result.callId, resultJson);
  }

  /** Drops acknowledged results from the outbox (they stay on disk for dedupe). */
  ack(ids: string[]): void {
    const known = ids.filter((id) => this.entries.get(id)?.done && !this.entries.get(id)?.acked);
    if (known.length === 0) return;
    // Not synced: a lost ack only means the result is sent once more, and the control plane dedupes.
    this.append({ op: 'ack', ids: known, at: this.options.now() });
  }

  /**
   * Resolves once everything written so far is on disk (fdatasync). Callers
   * that ask while a sync runs share the next one: one fdatasync per wave, not per result.
   * @throws RunnerError `io` when the disk refuses.
   */
  sync(): Promise<void> {
    if (!this.syncing) {
      const run = this.fh.datasync().catch((err: unknown) => {
        throw new RunnerError('io', `cannot sync the call journal ${this.file} (${(err as NodeJS.ErrnoException).code}); check the disk and the state dir`, { cause: err });
      });
      this.syncing = run.finally(() => {
        this.syncing = undefined;
      });
      return this.syncing;
    }
    // The running sync may have started before this caller's write: one more follows it.
    this.syncQueued ??= this.syncing
      .catch(() => undefined)
      .then(() => {
        this.syncQueued = undefined;
        return this.sync();
      });
    return this.syncQueued;
  }

  /** Results not yet acknowledged, oldest first. */
  pending(): ToolResultMessage[] {
    return [...this.entries.values()]
      .filter((e) => e.done && !e.acked && e.result)
      .sort((a, b) => a.at - b.at)
      .map((e) => e.result!);
  }

  /** Number of unacknowledged results. */
  get depth(): number {
    return this.outbox;
  }

  /** Syncs what was written, then closes the file. */
  async close(): Promise<void> {
    await this.sync().catch(() => undefined);
    await this.fh.close();
  }

  /**
   * Writes one record at the end of the file, synchronously: a page-cache write
   * takes microseconds, where a trip through libuv's thread pool costs a call
   * far more on a busy host. A failed write leaves the size unchanged, so the
   * next record overwrites the torn one.
   */
  private append(record: JournalRecord, resultId?: string, resultJson?: string): void {
    // The same text JSON.stringify(record) gives ({op, id, at, result} in that order).
    const json = resultJson !== undefined && record.op === 'done' ? `{"op":"done","id":${JSON.stringify(record.id)},"at":${record.at},"result":${resultJson}}` : JSON.stringify(record);
    const line = Buffer.from(json + '\n');
    const offset = this.size;
    try {
      for (let done = 0; done < line.length; ) done += writeSync(this.fh.fd, line, done, line.length - done, offset + done);
    } catch (err) {
      throw new RunnerError('io', `cannot write the call journal ${this.file} (${(err as NodeJS.ErrnoException).code}); free disk space or check the state dir`, { cause: err });
    }
    this.size += line.length;
    this.apply(record, resultId ? { offset, length: line.length } : undefined);
    if (record.op !== 'begin') this.options.onDepth(this.depth);
  }

  private apply(record: JournalRecord, loc?: { offset: number; length: number }): void {
    if (record.op === 'begin') {
      if (!this.entries.has(record.id)) this.entries.set(record.id, { at: record.at, done: false, acked: false });
    } else if (record.op === 'done') {
      const e = this.entries.get(record.id) ?? { at: record.at, done: false, acked: false };
      if (!e.done && !e.acked) this.outbox++;
      Object.assign(e, { done: true, result: record.result, ...loc });
      this.entries.set(record.id, e);
    } else {
      for (const id of record.ids) this.markAcked(id);
    }
  }

  private markAcked(id: string): void {
    const e = this.entries.get(id);
    if (!e || !e.done) return;
    if (!e.acked) this.outbox--;
    e.acked = true;
    // Kept on disk; memory holds only what is still to be delivered.
    if (e.offset !== undefined) delete e.result;
  }

  private async readBack(e: Entry): Promise<ToolResultMessage> {
    const buf = Buffer.alloc(e.length!);
    await this.fh.read(buf, 0, e.length!, e.offset!);
    const rec = JSON.parse(buf.toString('utf8')) as { result: unknown };
    return ToolResultMessageSchema.parse(rec.result);
  }
}

type JournalRecord =
  | { op: 'begin'; id: string; at: number }
  | { op: 'done'; id: string; at: number; result: ToolResultMessage }
  | { op: 'ack'; ids: string[]; at: number };

interface LiveRecord {
  at: number;
  result?: ToolResultMessage;
  acked: boolean;
}

function replay(text: string): Map<string, LiveRecord> {
  const live = new Map<string, LiveRecord>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    let rec: JournalRecord;
    try {
      rec = JSON.parse(line) as JournalRecord;
    } catch {
      continue; // a torn last line from a crash mid-write
    }
    if (rec.op === 'begin') {
      if (!live.has(rec.id)) live.set(rec.id, { at: rec.at, acked: false });
    } else if (rec.op === 'done') {
      const parsed = ToolResultMessageSchema.safeParse(rec.result);
      if (!parsed.success) continue;
      const e = live.get(rec.id) ?? { at: rec.at, acked: false };
      e.result = parsed.data;
      live.set(rec.id, e);
    } else if (rec.op === 'ack' && Array.isArray(rec.ids)) {
      for (const id of rec.ids) {
        const e = live.get(id);
        if (e?.result) e.acked = true;
      }
    }
  }
  return live;
}

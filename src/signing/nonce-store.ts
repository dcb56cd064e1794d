import { writeSync } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { checkSecretFile, ensurePrivateDir, writeFileAtomic } from '../credentials/key-files.js';
import { RunnerError } from '../util/errors.js';

export interface NonceStoreOptions {
  /** The file, e.g. `<stateDir>/nonces.jsonl`; created 0600 (its directory 0700) when missing. */
  path: string;
  /** Milliseconds since the epoch; default Date.now. */
  clock?: () => number;
  /** Most nonces held at once; past it new ones are refused (fail closed). Default 1,000,000. */
  maxEntries?: number;
  /** Skip the owner/mode check of an existing file (tests of other parts only). Default false. */
  skipHygieneCheck?: boolean;
}

/**
 * The nonces of accepted requests, kept until their request could no longer
 * pass the freshness window, so that a replayed request is refused also after
 * the runner restarts.
 *
 * On disk: one JSON line `[keepUntilMs,"nonce"]` per accepted nonce, appended
 * and fdatasync'ed before the request is acted on. A torn last line (a crash
 * mid-write) is skipped on open. The file is rewritten atomically without the
 * expired entries at open and whenever the appended lines outnumber the live
 * ones, so it stays bounded by the window, not by the runner's uptime.
 */
/** Longest time a recorded nonce waits for fdatasync. */
const SYNC_INTERVAL_MS = 50;

export class NonceStore {
  private readonly live = new Map<string, number>();
  private appended = 0;
  private handle: FileHandle | undefined;
  /** Serialises rewrites and syncs; appends wait on it only while a rewrite runs. */
  private queue: Promise<void> = Promise.resolve();
  /** A rewrite swaps the file: appends made meanwhile go after it, in the queue. */
  private rewriting = false;
  private closed = false;

  private constructor(
    private readonly path: string,
    private readonly clock: () => number,
    private readonly maxEntries: number,
  ) {}

  /**
   * Opens (or creates) the store.
   * @throws RunnerError `state_insecure` when the file is a symlink, someone else's, or open to others.
   */
  static async open(options: NonceStoreOptions): Promise<NonceStore> {
    const store = new NonceStore(options.path, options.clock ?? Date.now, options.maxEntries ?? 1_000_000);
    await ensurePrivateDir(dirname(options.path));
    let text = '';
    try {
      if (!options.skipHygieneCheck) await checkSecretFile(options.path);
      text = await readFile(options.path, 'utf8');
    } catch (err) {
      if (!(err instanceof RunnerError && err.code === 'state_missing')) throw err;
    }
    const now = store.clock();
    for (const line of text.split('\n')) {
      const entry = parseLine(line);
      if (entry && entry[0] >= now) store.live.set(entry[1], entry[0]);
    }
    await store.rewrite();
    return store;
  }

  /** Nonces currently held. */
  get size(): number {
    return this.live.size;
  }

  /**
   * Records `nonce`, to be kept until `keepUntil` (ms since the epoch). Returns
   * false, recording nothing, when the nonce is already held: a replay. The
   * nonce is durable on disk when the promise resolves.
   * @throws RunnerError `io` when it cannot be written (the nonce is then not held,
   *   and the caller must refuse the request); `limit_exceeded` when full.
   */
  private syncTimer: NodeJS.Timeout | undefined;

  private scheduleSync(): void {
    if (this.syncTimer) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      const handle = this.handle;
      this.queue = this.queue.then(() => handle?.datasync()).catch(() => undefined);
    }, SYNC_INTERVAL_MS);
    this.syncTimer.unref();
  }

  async record(nonce: string, keepUntil: number): Promise<boolean> {
    if (this.closed) throw new RunnerError('internal', 'the nonce store is closed; open it again');
    // Checked and set before any await: two copies of one request arriving
    // together cannot both pass.
    if (this.live.has(nonce)) return false;
    if (this.live.size >= this.maxEntries) {
      this.prune();
      if (this.live.size >= this.maxEntries) {
        throw new RunnerError(
          'limit_exceeded',
          `more than ${this.maxEntries} request nonces are live; lower the signature window or raise the nonce store limit`,
        );
      }
    }
    this.live.set(nonce, keepUntil);
    const line = `${JSON.stringify([keepUntil, nonce])}\n`;
    // Written before the request acts, so a restarted runner still refuses a
    // replay; synced within SYNC_INTERVAL_MS rather than per request (an
    // fsync per call on the hot path). Only a power loss inside that window
    // can forget a nonce, and its timestamp still limits a replay to the window.
    // The write itself is synchronous (page cache, microseconds) unless a
    // rewrite is swapping the file, when it queues behind it.
    const append = () => {
      writeSync(this.handle!.fd, line);
      this.scheduleSync();
      this.appended++;
      if (this.appended > Math.max(1000, this.live.size) && !this.rewriting) {
        this.rewriting = true;
        this.queue = this.queue
          .then(() => this.rewrite())
          .catch(() => undefined)
          .finally(() => {
            this.rewriting = false;
          });
      }
    };
    try {
      if (this.rewriting || !this.handle) {
        const queued = this.queue.then(append);
        this.queue = queued.catch(() => undefined);
        await queued;
      } else {
        append();
      }
    } catch (err) {
      this.live.delete(nonce);
      throw new RunnerError('io', `cannot record a request nonce in ${this.path}; check the disk and the state directory`, {
        cause: err,
      });
    }
    return true;
  }

  /** Flushes and closes the file. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    await this.queue;
    await this.handle?.datasync().catch(() => undefined);
    await this.handle?.close();
    this.handle = undefined;
  }

  private prune(): void {
    const now = this.clock();
    for (const [nonce, until] of this.live) if (until < now) this.live.delete(nonce);
  }

  /** Writes the live entries to a fresh file (atomic rename) and appends to that from now on. */
  private async rewrite(): Promise<void> {
    this.prune();
    let text = '';
    for (const [nonce, until] of this.live) text += `${JSON.stringify([until, nonce])}\n`;
    await this.handle?.close();
    this.handle = undefined;
    await writeFileAtomic(this.path, text, 0o600);
    this.handle = await open(this.path, 'a', 0o600);
    this.appended = 0;
  }
}

function parseLine(line: string): [number, string] | undefined {
  if (line.length === 0) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    if (Array.isArray(value) && typeof value[0] === 'number' && typeof value[1] === 'string') {
      return [value[0], value[1]];
    }
  } catch {
    // A torn last line after a crash: that request was never acted on.
  }
  return undefined;
}

import { EventEmitter } from 'node:events';
import { closeSync, fdatasync, fdatasyncSync, ftruncateSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import sodium from 'libsodium-wrappers';
import { RunnerError } from '../util/errors.js';
import { noopLogger, type Logger } from '../util/logger.js';
import {
  ENTRY_TYPE_PATTERN,
  RESERVED_TYPES,
  auditFileName,
  computeEntryHash,
  encodeEntry,
  signCheckpoint,
  type AuditCheckpoint,
  type AuditEntry,
} from './audit-entry.js';
import { recover, syncDir, type ChainPosition } from './audit-recovery.js';
import {
  DEFAULT_CHECKPOINT_EVERY,
  DEFAULT_MAX_FILE_BYTES,
  DEFAULT_SYNC_INTERVAL_MS,
  type AuditEvent,
  type AuditLogOptions,
} from './audit-log-options.js';
import { toPlainJson } from './canonical-json.js';

/** Events of an AuditLog. `failed` fires once, when the log stops accepting entries. */
export interface AuditLogEvents {
  failed: [error: RunnerError];
  checkpoint: [checkpoint: AuditCheckpoint];
}

/**
 * The tamper-evident audit log: append-only JSON lines, each entry chained to
 * the previous one by hash, signed checkpoints every `checkpointEvery` entries
 * and at close, rotation by size that keeps the chain.
 *
 * Appends are synchronous: the line is in the file (page cache) when `append`
 * returns, so entries keep their order and a crash of the process loses
 * nothing; fdatasync follows within `syncIntervalMs`, in the thread pool. A
 * checkpoint is handed to `onCheckpoint` only once it is on disk: the one an
 * append brings is synced in the background, so the append does not wait for
 * the disk; `checkpoint()` and `close()` sync before they return. Any write failure (a full
 * disk, a quota) puts the log in a failed state: every later `append` throws
 * `audit_failed` and `failed` is emitted, so that the daemon stops taking calls.
 */
export class AuditLog extends EventEmitter<AuditLogEvents> {
  readonly dir: string;
  private readonly signingKey: Uint8Array;
  private readonly checkpointEvery: number;
  private readonly maxFileBytes: number;
  private readonly syncIntervalMs: number;
  private readonly logger: Logger;
  private readonly clock: () => number;
  private readonly onCheckpoint: ((cp: AuditCheckpoint) => void) | undefined;
  private fd: number;
  private fileSize: number;
  private pos: ChainPosition;
  private sinceCheckpoint = 0;
  private lastCheckpoint: AuditCheckpoint | undefined;
  private failure: RunnerError | undefined;
  private closed = false;
  private syncTimer: NodeJS.Timeout | undefined;
  private syncInFlight: Promise<void> | undefined;

  private constructor(options: AuditLogOptions, fd: number, fileSize: number, pos: ChainPosition) {
    super();
    this.dir = options.dir;
    this.signingKey = options.signingKey;
    this.checkpointEvery = options.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY;
    this.maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    this.syncIntervalMs = options.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS;
    this.logger = options.logger ?? noopLogger;
    this.clock = options.clock ?? Date.now;
    this.onCheckpoint = options.onCheckpoint;
    this.fd = fd;
    this.fileSize = fileSize;
    this.pos = pos;
  }

  /**
   * Opens (or creates) the log in `options.dir`. A torn last line (a write cut
   * short by a crash or a full disk) is cut, and after any shutdown that did not
   * end with a final checkpoint a `recovered` entry records how many bytes were
   * cut. Throws `config_invalid` when the keys do not match, `audit_failed`
   * when the directory cannot be written or its last entry cannot be read.
   */
  static async open(options: AuditLogOptions): Promise<AuditLog> {
    await sodium.ready;
    if (options.signingKey.length !== sodium.crypto_sign_SECRETKEYBYTES || options.publicKey.length !== sodium.crypto_sign_PUBLICKEYBYTES) {
      throw new RunnerError('config_invalid', 'the audit signing key must be a 64-byte Ed25519 secret key with its 32-byte public key; re-pair the runner to make new keys');
    }
    // A libsodium secret key ends with its public key.
    if (!Buffer.from(options.signingKey.subarray(32)).equals(Buffer.from(options.publicKey))) {
      throw new RunnerError('config_invalid', 'the audit public key does not belong to the signing key; check the runner identity in the state directory');
    }
    const dir = options.dir;
    let recovery: ReturnType<typeof recover>;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      recovery = recover(dir);
    } catch (err) {
      if (err instanceof RunnerError) throw err;
      throw new RunnerError('audit_failed', `the audit log in ${dir} cannot be opened; check that the directory exists, is writable by the runner and its disk is not full`, {
        cause: err,
        detail: (err as Error).message,
      });
    }
    const log = new AuditLog(options, recovery.fd, recovery.size, recovery.pos);
    if (recovery.cut > 0) log.logger.warn({ file: recovery.file, bytesCut: recovery.cut }, 'cut a torn last line from the audit log');
    if (!recovery.clean) {
      log.write({
        type: 'recovered',
        fields: { file: recovery.file, bytesCut: recovery.cut, reason: recovery.cut > 0 ? 'torn last line' : 'no final checkpoint: the previous run did not stop cleanly' },
      });
    }
    return log;
  }

  /** False once a write failed; the daemon must then refuse calls. */
  get healthy(): boolean {
    return this.failure === undefined && !this.closed;
  }

  /** The error that put the log in its failed state, if any. */
  get error(): RunnerError | undefined {
    return this.failure;
  }

  /** Sequence number and hash of the newest entry (0 and GENESIS_HASH for an empty log). */
  get head(): { seq: number; hash: string } {
    return { seq: this.pos.lastSeq, hash: this.pos.lastHash };
  }

  /**
   * Appends one event and returns the stored entry. Fields other than `type`,
   * `callId` and `sessionId` go under `fields` as JSON; never pass a secret.
   * Throws `audit_failed` in the failed state or when the write fails, and
   * `internal` for a reserved or malformed type.
   */
  append(event: AuditEvent): AuditEntry {
    const { type, callId, sessionId, ...fields } = event;
    if (!ENTRY_TYPE_PATTERN.test(type) || RESERVED_TYPES.has(type)) {
      throw new RunnerError('internal', `audit entry type "${type}" is reserved or malformed; use lowercase letters, digits, . _ or -`);
    }
    let plain: Record<string, unknown>;
    try {
      plain = toPlainJson(fields) as Record<string, unknown>;
    } catch (err) {
      throw new RunnerError('internal', `audit entry "${type}" has a field that is not JSON data; pass strings, finite numbers, booleans, arrays or objects`, { cause: err });
    }
    const entry = this.write({ type, callId: str(callId), sessionId: str(sessionId), fields: plain });
    this.sinceCheckpoint += 1;
    if (this.sinceCheckpoint >= this.checkpointEvery) {
      // On the append's path: written now, synced off the event loop (a
      // synchronous fdatasync here held up every call in flight, on a real
      // disk for milliseconds), and announced once it is on disk.
      const cp = this.writeCheckpoint(false);
      this.syncInBackground(() => this.announce(cp));
    }
    return entry;
  }

  /**
   * Signs the newest entry, writes the checkpoint into the log, syncs it to
   * disk and hands it to `onCheckpoint`. Returns the previous checkpoint when
   * nothing was appended since. Throws `audit_failed` in the failed state.
   */
  checkpoint(options: { final?: boolean } = {}): AuditCheckpoint | undefined {
    this.assertWritable();
    if (this.pos.lastSeq === 0) return undefined;
    if (this.pos.lastType === 'checkpoint' && !options.final) return this.lastCheckpoint;
    const cp = this.writeCheckpoint(options.final ?? false);
    this.syncNow();
    // After any checkpoint still waiting for its background sync: listeners get them in order.
    if (this.syncInFlight) void this.syncInFlight.then(() => this.announce(cp));
    else this.announce(cp);
    return cp;
  }

  /** Signs the newest entry and writes the checkpoint line (not yet synced). */
  private writeCheckpoint(final: boolean): AuditCheckpoint {
    const cp = signCheckpoint(this.signingKey, this.pos.lastSeq, this.pos.lastHash, new Date(this.clock()).toISOString());
    this.write({ type: 'checkpoint', fields: { ...cp, ...(final ? { final: true } : {}) } });
    this.sinceCheckpoint = 0;
    this.lastCheckpoint = cp;
    return cp;
  }

  /** Hands a checkpoint that is on disk to its listeners. */
  private announce(cp: AuditCheckpoint): void {
    try {
      this.onCheckpoint?.(cp);
      this.emit('checkpoint', cp);
    } catch (err) {
      this.logger.error({ err }, 'audit checkpoint listener failed');
    }
  }

  /** Resolves when every entry appended so far is on disk. */
  async flush(): Promise<void> {
    if (this.syncInFlight) await this.syncInFlight;
    if (this.closed || this.failure) return;
    this.syncNow();
  }

  /** Writes a final checkpoint, syncs and closes. Idempotent; never throws for a failed log. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.syncTimer) clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    if (this.syncInFlight) await this.syncInFlight.catch(() => undefined);
    if (!this.failure) {
      try {
        this.checkpoint({ final: true });
      } catch (err) {
        this.logger.error({ err }, 'could not write the final audit checkpoint');
      }
    }
    this.closed = true;
    try {
      closeSync(this.fd);
    } catch {
      // Already closed by a rotation that failed half-way.
    }
  }

  private assertWritable(): void {
    if (this.failure) throw this.failure;
    if (this.closed) throw new RunnerError('audit_failed', 'the audit log is closed; open it again before appending');
  }

  /** Builds, chains and writes one entry; on any failure the log fails closed. */
  private write(partial: { type: string; callId?: string; sessionId?: string; fields: Record<string, unknown> }): AuditEntry {
    this.assertWritable();
    const body: Omit<AuditEntry, 'hash'> = {
      seq: this.pos.lastSeq + 1,
      time: new Date(this.clock()).toISOString(),
      type: partial.type,
      ...(partial.callId !== undefined ? { callId: partial.callId } : {}),
      ...(partial.sessionId !== undefined ? { sessionId: partial.sessionId } : {}),
      fields: partial.fields,
      prev: this.pos.lastHash,
    };
    const entry: AuditEntry = { ...body, hash: computeEntryHash(body) };
    const line = Buffer.from(`${encodeEntry(entry)}\n`, 'utf8');
    try {
      if (this.fileSize > 0 && this.fileSize + line.length > this.maxFileBytes) this.rotate();
      writeAll(this.fd, line);
    } catch (err) {
      throw this.fail(err);
    }
    this.fileSize += line.length;
    this.pos = { index: this.pos.index, lastSeq: entry.seq, lastHash: entry.hash, lastType: entry.type };
    this.scheduleSync();
    return entry;
  }

  private rotate(): void {
    fdatasyncSync(this.fd);
    closeSync(this.fd);
    const index = this.pos.index + 1;
    // Until the new file is open, fd points at a closed descriptor: fail() must not reuse it.
    this.fd = openSync(join(this.dir, auditFileName(index)), 'a', 0o600);
    syncDir(this.dir);
    this.pos = { ...this.pos, index };
    this.fileSize = 0;
    this.logger.info({ file: auditFileName(index) }, 'audit log rotated');
  }

  private scheduleSync(): void {
    if (this.syncIntervalMs <= 0) {
      this.syncNow();
      return;
    }
    if (this.syncTimer) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      if (this.closed || this.failure) return;
      this.syncInBackground();
    }, this.syncIntervalMs);
    this.syncTimer.unref();
  }

  /**
   * fdatasync in the thread pool, after any sync already under way (so that
   * `onDisk` callbacks run in the order of their writes); `onDisk` runs once
   * everything written before this call is on disk. A failure puts the log in
   * its failed state.
   */
  private syncInBackground(onDisk?: () => void): void {
    const fd = this.fd;
    const sync = (): Promise<void> =>
      new Promise<void>((resolve) => {
        if (this.failure) return resolve();
        if (this.closed) {
          // close() synced everything before it closed the file.
          onDisk?.();
          return resolve();
        }
        fdatasync(fd, (err) => {
          // A rotation meanwhile synced and closed this descriptor itself: what it held is on disk.
          if (err && fd === this.fd) this.fail(err);
          else onDisk?.();
          resolve();
        });
      });
    const mine: Promise<void> = this.syncInFlight ? this.syncInFlight.then(sync) : sync();
    this.syncInFlight = mine;
    void mine.then(() => {
      if (this.syncInFlight === mine) this.syncInFlight = undefined;
    });
  }

  private syncNow(): void {
    try {
      fdatasyncSync(this.fd);
    } catch (err) {
      throw this.fail(err);
    }
  }

  private fail(err: unknown): RunnerError {
    if (this.failure) return this.failure;
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown';
    const hint = code === 'ENOSPC' || code === 'EDQUOT' ? 'free space on its disk (or raise the quota)' : 'fix the file system error';
    this.failure = new RunnerError('audit_failed', `the audit log in ${this.dir} cannot be written (${code}); ${hint}, then restart the runner, which refuses calls until then`, {
      cause: err,
      detail: (err as Error).message,
    });
    // Best effort: drop a partly written line so the file ends on a whole entry.
    try {
      ftruncateSync(this.fd, this.fileSize);
    } catch {
      // The next open cuts it instead.
    }
    this.logger.error({ err: this.failure, detail: this.failure.detail }, 'audit log failed: refusing further entries');
    this.emit('failed', this.failure);
    return this.failure;
  }
}

function str(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  return String(value);
}

function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  // A short write happens on a full disk: the loop's next write reports ENOSPC.
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

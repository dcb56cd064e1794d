import type { Logger } from '../util/logger.js';
import type { AuditCheckpoint } from './audit-entry.js';

/** Options of AuditLog.open. */
export interface AuditLogOptions {
  /** The audit directory (`<stateDir>/audit`); created 0700 when missing. */
  dir: string;
  /** The runner's Ed25519 secret key (libsodium, 64 bytes): signs checkpoints. */
  signingKey: Uint8Array;
  /** Its public half (32 bytes); must match `signingKey`. */
  publicKey: Uint8Array;
  /** A signed checkpoint after this many entries. Default 100. */
  checkpointEvery?: number;
  /** Start a new file when the current one would grow past this. Default 64 MiB. */
  maxFileBytes?: number;
  /**
   * Bound on how long an appended entry may sit in the page cache before
   * fdatasync: 0 syncs every entry before `append` returns. Default 50 ms.
   * Entries are written to the file at once either way, so a crash of the
   * process loses nothing; the bound is what a power loss may cost.
   */
  syncIntervalMs?: number;
  logger?: Logger;
  /** Milliseconds since the epoch; default Date.now. */
  clock?: () => number;
  /** Called with each signed checkpoint once it is on disk, in order (the daemon forwards it to the control plane). */
  onCheckpoint?: (checkpoint: AuditCheckpoint) => void;
}

/** What `append` takes: a type, optional call and session ids, and any JSON fields. */
export interface AuditEvent {
  type: string;
  callId?: string;
  sessionId?: string;
  [field: string]: unknown;
}

export const DEFAULT_CHECKPOINT_EVERY = 100;
export const DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024;
export const DEFAULT_SYNC_INTERVAL_MS = 50;

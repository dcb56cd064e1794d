import { createHash } from 'node:crypto';
import sodium from 'libsodium-wrappers';
import { z } from 'zod';
import { canonicalJson } from './canonical-json.js';

/**
 * One line of the audit log. `hash` is SHA-256 (hex) over the canonical
 * encoding of every other member; `prev` is the previous entry's `hash`
 * (GENESIS_HASH for the first entry ever), across file rotations.
 */
export interface AuditEntry {
  seq: number;
  /** ISO 8601 UTC, from the log's clock. */
  time: string;
  type: string;
  callId?: string;
  sessionId?: string;
  fields: Record<string, unknown>;
  prev: string;
  hash: string;
}

/**
 * A signed statement "entry `seq` has hash `hash`". Written into the log as a
 * `checkpoint` entry and handed to `onCheckpoint`, which the daemon forwards to
 * the control plane as the `audit.checkpoint` message: a copy out of reach of
 * whoever controls this host.
 */
export interface AuditCheckpoint {
  seq: number;
  hash: string;
  /** base64 Ed25519 signature over checkpointMessage(seq, hash). */
  signature: string;
  /** When it was signed, ISO 8601. */
  at: string;
}

/** `prev` of the very first entry. */
export const GENESIS_HASH = '0'.repeat(64);

/** Entry types the log writes itself; `append` refuses them. */
export const RESERVED_TYPES: ReadonlySet<string> = new Set(['checkpoint', 'recovered']);

/** Event types the daemon writes (documentation for callers; any matching name is accepted). */
export const AUDIT_EVENT_TYPES = [
  'start',
  'stop',
  'call.received',
  'call.refused',
  'credential.used',
  'sandbox.started',
  'sandbox.ended',
  'call.result',
  'pairing',
  'config.reloaded',
  'policy.reloaded',
] as const;

export const ENTRY_TYPE_PATTERN = /^[a-z][a-z0-9_.-]{0,63}$/;
const hex64 = z.string().regex(/^[0-9a-f]{64}$/);

/** The shape of a stored line; verify and read parse with it. */
export const AuditEntrySchema = z
  .object({
    seq: z.number().int().positive(),
    time: z.string().min(1),
    type: z.string().regex(ENTRY_TYPE_PATTERN),
    callId: z.string().optional(),
    sessionId: z.string().optional(),
    fields: z.record(z.string(), z.unknown()),
    prev: hex64,
    hash: hex64,
  })
  .strict();

export const CheckpointFieldsSchema = z
  .object({
    seq: z.number().int().positive(),
    hash: hex64,
    signature: z.string().min(1),
    at: z.string().min(1),
    final: z.boolean().optional(),
  })
  .strict();

/** SHA-256 hex over the canonical encoding of an entry without its `hash`. */
export function computeEntryHash(entry: Omit<AuditEntry, 'hash'> & { hash?: string }): string {
  const { hash: _ignored, ...rest } = entry;
  return createHash('sha256').update(canonicalJson(rest), 'utf8').digest('hex');
}

/** The stored line (without the newline): the canonical encoding of the whole entry. */
export function encodeEntry(entry: AuditEntry): string {
  return canonicalJson(entry);
}

/**
 * The bytes a checkpoint signs. The prefix keeps the signature from being
 * mistaken for any other message signed with the same identity key.
 */
export function checkpointMessage(seq: number, hash: string): Uint8Array {
  return new TextEncoder().encode(`sandbox-runner-audit-checkpoint:v1:${seq}:${hash}`);
}

/** Signs entry `seq`/`hash`. Call after `await sodium.ready`. */
export function signCheckpoint(secretKey: Uint8Array, seq: number, hash: string, at: string): AuditCheckpoint {
  const sig = sodium.crypto_sign_detached(checkpointMessage(seq, hash), secretKey);
  return { seq, hash, signature: Buffer.from(sig).toString('base64'), at };
}

/** True when `cp.signature` is a valid signature by `publicKey`. Call after `await sodium.ready`. */
export function checkpointSignatureValid(publicKey: Uint8Array, cp: Pick<AuditCheckpoint, 'seq' | 'hash' | 'signature'>): boolean {
  const sig = Buffer.from(cp.signature, 'base64');
  if (sig.length !== sodium.crypto_sign_BYTES) return false;
  try {
    return sodium.crypto_sign_verify_detached(sig, checkpointMessage(cp.seq, cp.hash), publicKey);
  } catch {
    return false;
  }
}

/** File name of rotation number `index` (1-based), e.g. `audit-000001.jsonl`. */
export function auditFileName(index: number): string {
  return `audit-${String(index).padStart(6, '0')}.jsonl`;
}

/** The rotation number of an audit file name, or undefined for any other name. */
export function auditFileIndex(name: string): number | undefined {
  const m = /^audit-(\d{6,})\.jsonl$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

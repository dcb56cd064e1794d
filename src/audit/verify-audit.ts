import { join } from 'node:path';
import sodium from 'libsodium-wrappers';
import {
  AuditEntrySchema,
  CheckpointFieldsSchema,
  GENESIS_HASH,
  auditFileName,
  checkpointSignatureValid,
  computeEntryHash,
  encodeEntry,
  type AuditCheckpoint,
  type AuditEntry,
} from './audit-entry.js';
import { listAuditFiles, readLines, type AuditFile } from './audit-files.js';

/** A log whose every entry checked out. */
export interface VerifyOk {
  ok: true;
  entries: number;
  checkpoints: number;
  files: number;
  lastSeq: number;
  lastHash: string;
  /** The newest entry covered by a signed checkpoint (0 when none). */
  lastCheckpointSeq: number;
  /** Entries after it that no signature covers yet (a trailing checkpoint entry does not count). */
  unsignedEntries: number;
}

/** The first bad entry: where it is and what is wrong with it. */
export interface VerifyFailure {
  ok: false;
  /** Path of the file (for a missing file: the path it should have). */
  file: string;
  /** 1-based line in that file; 0 when the whole file is missing. */
  line: number;
  /** The sequence number found there, or the one expected when the line cannot be read. */
  seq: number;
  reason: string;
  /** The raw line (at most 2000 characters), to show the operator. */
  entry?: string;
}

export type VerifyResult = VerifyOk | VerifyFailure;

export interface VerifyOptions {
  /**
   * Checkpoints held elsewhere (the control plane's copies). Each must match
   * the entry it names, which also catches entries cut from the end of the log.
   */
  checkpoints?: AuditCheckpoint[];
  signal?: AbortSignal;
}

/**
 * Checks the whole chain in `dir`: every file of the rotation present, every
 * line canonical JSON whose hash matches its content, sequence numbers without
 * gaps, each `prev` equal to the previous hash, each checkpoint signed by
 * `publicKey` and equal to the chain it covers. Stops at the first bad entry.
 */
export async function verifyAudit(dir: string, publicKey: Uint8Array, options: VerifyOptions = {}): Promise<VerifyResult> {
  await sodium.ready;
  let files: AuditFile[];
  try {
    files = listAuditFiles(dir);
  } catch (err) {
    return { ok: false, file: dir, line: 0, seq: 1, reason: `the audit directory cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
  }
  if (files.length === 0) return { ok: false, file: dir, line: 0, seq: 1, reason: 'the directory holds no audit files' };
  const external = new Map((options.checkpoints ?? []).map((cp) => [cp.seq, cp]));
  let expectedSeq = 1;
  let prevHash = GENESIS_HASH;
  let checkpoints = 0;
  let lastCheckpointSeq = 0;
  let lastType = '';
  for (let i = 0; i < files.length; i += 1) {
    const file = files[i]!;
    const wantIndex = i === 0 ? 1 : files[i - 1]!.index + 1;
    if (file.index !== wantIndex) {
      return { ok: false, file: join(dir, auditFileName(wantIndex)), line: 0, seq: expectedSeq, reason: `the file is missing from the rotation sequence; entries from ${expectedSeq} on cannot be checked against it` };
    }
    for await (const line of readLines(file.path, { signal: options.signal })) {
      const at = { file: file.path, line: line.lineNo, entry: line.text.slice(0, 2000) };
      const fail = (seq: number, reason: string): VerifyFailure => ({ ok: false, ...at, seq, reason });
      if (!line.complete) return fail(expectedSeq, 'the entry is incomplete (a torn write or a truncated file); starting the runner cuts a torn last line and records it');
      let entry: AuditEntry;
      try {
        const parsed = AuditEntrySchema.safeParse(JSON.parse(line.text));
        if (!parsed.success) return fail(expectedSeq, 'the line does not have the shape of an audit entry (altered bytes)');
        entry = parsed.data as AuditEntry;
      } catch {
        return fail(expectedSeq, 'the line is not valid JSON (altered bytes)');
      }
      if (encodeEntry(entry) !== line.text) return fail(entry.seq, 'the line is not in canonical form (altered bytes)');
      if (computeEntryHash(entry) !== entry.hash) return fail(entry.seq, 'the hash does not match the content: the entry was altered');
      if (entry.seq !== expectedSeq) {
        const how = entry.seq > expectedSeq ? `entries ${expectedSeq}..${entry.seq - 1} were deleted` : 'entries were reordered or repeated';
        return fail(entry.seq, `expected entry ${expectedSeq} here but found ${entry.seq}: ${how}`);
      }
      if (entry.prev !== prevHash) return fail(entry.seq, 'the entry does not link to the previous one: an entry before it was removed, replaced or reordered');
      if (entry.type === 'checkpoint') {
        const cp = CheckpointFieldsSchema.safeParse(entry.fields);
        if (!cp.success) return fail(entry.seq, 'the checkpoint is malformed');
        if (!checkpointSignatureValid(publicKey, cp.data)) return fail(entry.seq, "the checkpoint's signature is not valid for this runner's public key");
        if (cp.data.seq !== entry.seq - 1 || cp.data.hash !== entry.prev) {
          return fail(cp.data.seq, `the chain up to entry ${cp.data.seq} disagrees with the signed checkpoint on this line: entries up to ${cp.data.seq} were rewritten`);
        }
        checkpoints += 1;
        lastCheckpointSeq = cp.data.seq;
      }
      const held = external.get(entry.seq);
      if (held) {
        if (!checkpointSignatureValid(publicKey, held)) return fail(entry.seq, `the external checkpoint for entry ${entry.seq} is not signed by this runner's key`);
        if (held.hash !== entry.hash) return fail(entry.seq, `entry ${entry.seq} disagrees with the signed checkpoint held by the control plane: the chain was rewritten`);
        lastCheckpointSeq = Math.max(lastCheckpointSeq, entry.seq);
      }
      prevHash = entry.hash;
      lastType = entry.type;
      expectedSeq += 1;
    }
  }
  const lastSeq = expectedSeq - 1;
  const beyond = [...external.keys()].filter((seq) => seq > lastSeq).sort((a, b) => a - b)[0];
  if (beyond !== undefined) {
    const last = files.at(-1)!;
    return { ok: false, file: last.path, line: 0, seq: beyond, reason: `the log ends at entry ${lastSeq} but a signed checkpoint names entry ${beyond}: entries were cut from the end` };
  }
  const unsignedEntries = lastSeq - lastCheckpointSeq - (lastType === 'checkpoint' && lastCheckpointSeq === lastSeq - 1 ? 1 : 0);
  return { ok: true, entries: lastSeq, checkpoints, files: files.length, lastSeq, lastHash: prevHash, lastCheckpointSeq, unsignedEntries };
}

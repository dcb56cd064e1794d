import { closeSync, fdatasyncSync, fstatSync, fsyncSync, ftruncateSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { RunnerError } from '../util/errors.js';
import { AuditEntrySchema, GENESIS_HASH, auditFileName, type AuditEntry } from './audit-entry.js';
import { listAuditFiles, readTail } from './audit-files.js';

/** Where the chain stands: the file appended to and the newest entry. */
export interface ChainPosition {
  index: number;
  lastSeq: number;
  lastHash: string;
  lastType: string | undefined;
}

/** Makes a new directory entry (a created or rotated file) durable. */
export function syncDir(dir: string): void {
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/**
 * Finds the head of the chain, cuts a torn tail (bytes after the last newline of
 * the newest file) and opens the newest file for appending. `clean` is true when
 * the previous run ended with its final checkpoint and nothing was cut.
 */
export function recover(dir: string): { fd: number; size: number; pos: ChainPosition; cut: number; clean: boolean; file: string } {
  const files = listAuditFiles(dir);
  const newest = files.at(-1);
  if (!newest) {
    const fd = openSync(join(dir, auditFileName(1)), 'a', 0o600);
    syncDir(dir);
    return { fd, size: 0, pos: { index: 1, lastSeq: 0, lastHash: GENESIS_HASH, lastType: undefined }, cut: 0, clean: true, file: auditFileName(1) };
  }
  const fd = openSync(newest.path, 'r+');
  const size = fstatSync(fd).size;
  const tail = readTail(fd, size);
  const cut = size - tail.completeEnd;
  if (cut > 0) {
    ftruncateSync(fd, tail.completeEnd);
    fdatasyncSync(fd);
  }
  let lastLine = tail.lastLine;
  let lineFile = newest.name;
  // The newest file may hold no complete entry (rotated just before a crash): look back.
  for (let i = files.length - 2; lastLine === undefined && i >= 0; i -= 1) {
    const older = files[i]!;
    const ofd = openSync(older.path, 'r');
    try {
      lastLine = readTail(ofd, fstatSync(ofd).size).lastLine;
      lineFile = older.name;
    } finally {
      closeSync(ofd);
    }
  }
  closeSync(fd);
  let pos: ChainPosition = { index: newest.index, lastSeq: 0, lastHash: GENESIS_HASH, lastType: undefined };
  let clean = cut === 0 && lastLine === undefined;
  if (lastLine !== undefined) {
    const parsed = parseLine(lastLine);
    if (!parsed) {
      throw new RunnerError('audit_failed', `the last entry of ${join(dir, lineFile)} cannot be read; run "sandbox-runner audit verify" to find the damage, then move the audit directory aside to start a new chain`);
    }
    pos = { index: newest.index, lastSeq: parsed.seq, lastHash: parsed.hash, lastType: parsed.type };
    clean = cut === 0 && parsed.type === 'checkpoint' && parsed.fields['final'] === true;
  }
  return { fd: openSync(newest.path, 'a', 0o600), size: tail.completeEnd, pos, cut, clean, file: newest.name };
}

function parseLine(line: string): AuditEntry | undefined {
  try {
    const result = AuditEntrySchema.safeParse(JSON.parse(line));
    return result.success ? (result.data as AuditEntry) : undefined;
  } catch {
    return undefined;
  }
}

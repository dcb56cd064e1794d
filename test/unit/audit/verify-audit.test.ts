import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { computeEntryHash, encodeEntry, GENESIS_HASH, type AuditCheckpoint, type AuditEntry } from '../../../src/audit/audit-entry.js';
import { verifyAudit } from '../../../src/audit/verify-audit.js';
import { makeKeys, makeTempDir, writeSampleLog } from './audit-fixtures.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});
function tempDir(): string {
  const t = makeTempDir();
  cleanups.push(t.remove);
  return t.dir;
}

const FIRST = 'audit-000001.jsonl';
function readLines(dir: string, name = FIRST): string[] {
  return readFileSync(join(dir, name), 'utf8').split('\n').slice(0, -1);
}
function writeLines(dir: string, lines: string[], name = FIRST): void {
  writeFileSync(join(dir, name), lines.map((l) => `${l}\n`).join(''));
}

describe('verifyAudit', () => {
  it('passes a log written by AuditLog', async () => {
    const dir = tempDir();
    const keys = await writeSampleLog(dir, 5);
    // start + 5 calls x 4 + stop = 22 entries, checkpoints after 10 and 20 entries, and a final one
    expect(await verifyAudit(dir, keys.publicKey)).toEqual({ ok: true, entries: 25, checkpoints: 3, files: 1, lastSeq: 25, lastHash: expect.any(String), lastCheckpointSeq: 24, unsignedEntries: 0 });
  });

  it('names the entry whose byte was flipped', async () => {
    const dir = tempDir();
    const keys = await writeSampleLog(dir, 3);
    const lines = readLines(dir);
    expect(lines[3]).toContain('"bwrap"');
    lines[3] = lines[3]!.replace('"bwrap"', '"bwrae"');
    writeLines(dir, lines);
    expect(await verifyAudit(dir, keys.publicKey)).toMatchObject({ ok: false, file: join(dir, FIRST), line: 4, seq: 4, reason: expect.stringMatching(/hash does not match/) });
  });

  it('names the entry when a flipped byte breaks the JSON', async () => {
    const dir = tempDir();
    const keys = await writeSampleLog(dir, 3);
    const raw = Buffer.from(readFileSync(join(dir, FIRST)));
    const lineStarts = [0, ...[...raw.keys()].filter((i) => raw[i] === 0x0a).map((i) => i + 1)];
    const at = lineStarts[6]!; // the opening brace of line 7
    raw[at] = raw[at]! ^ 0x01;
    writeFileSync(join(dir, FIRST), raw);
    expect(await verifyAudit(dir, keys.publicKey)).toMatchObject({ ok: false, line: 7, seq: 7, reason: expect.stringMatching(/not valid JSON/) });
  });

  it('finds a deleted entry', async () => {
    const dir = tempDir();
    const keys = await writeSampleLog(dir, 3);
    const lines = readLines(dir);
    lines.splice(5, 1); // entry 6
    writeLines(dir, lines);
    expect(await verifyAudit(dir, keys.publicKey)).toMatchObject({ ok: false, line: 6, seq: 7, reason: expect.stringMatching(/expected entry 6 here but found 7: entries 6..6 were deleted/) });
  });

  it('finds two reordered entries', async () => {
    const dir = tempDir();
    const keys = await writeSampleLog(dir, 3);
    const lines = readLines(dir);
    [lines[3], lines[4]] = [lines[4]!, lines[3]!];
    writeLines(dir, lines);
    expect(await verifyAudit(dir, keys.publicKey)).toMatchObject({ ok: false, line: 4, seq: 5, reason: expect.stringMatching(/expected entry 4 here but found 5/) });
  });

  it('finds a truncated entry, at the end and in the middle', async () => {
    const dir = tempDir();
    const keys = await writeSampleLog(dir, 3);
    const path = join(dir, FIRST);
    const whole = readFileSync(path);
    writeFileSync(path, whole.subarray(0, whole.length - 20));
    const lines = readLines(dir);
    expect(await verifyAudit(dir, keys.publicKey)).toMatchObject({ ok: false, line: lines.length + 1, reason: expect.stringMatching(/incomplete/) });

    const again = readFileSync(path, 'utf8').split('\n');
    again[2] = again[2]!.slice(0, 40);
    writeFileSync(path, again.join('\n'));
    expect(await verifyAudit(dir, keys.publicKey)).toMatchObject({ ok: false, line: 3, seq: 3, reason: expect.stringMatching(/not valid JSON/) });
  });

  it('finds a file missing from the rotation sequence', async () => {
    const dir = tempDir();
    const keys = await writeSampleLog(dir, 10, { maxFileBytes: 4000 });
    const files = readdirSync(dir).sort();
    expect(files.length).toBeGreaterThanOrEqual(3);
    const firstOfThird = JSON.parse(readLines(dir, files[2]!)[0]!) as AuditEntry;
    const firstOfSecond = JSON.parse(readLines(dir, files[1]!)[0]!) as AuditEntry;
    rmSync(join(dir, files[1]!));
    expect(await verifyAudit(dir, keys.publicKey)).toMatchObject({ ok: false, file: join(dir, files[1]!), line: 0, seq: firstOfSecond.seq, reason: expect.stringMatching(/missing/) });
    expect(firstOfThird.seq).toBeGreaterThan(firstOfSecond.seq);

    const other = tempDir();
    const otherKeys = await writeSampleLog(other, 10, { maxFileBytes: 4000 });
    rmSync(join(other, FIRST));
    expect(await verifyAudit(other, otherKeys.publicKey)).toMatchObject({ ok: false, file: join(other, FIRST), seq: 1, reason: expect.stringMatching(/missing/) });
  });

  it('finds a chain rewritten consistently that disagrees with a signed checkpoint', async () => {
    const dir = tempDir();
    const keys = await writeSampleLog(dir, 5);
    const rewritten = rewrite(readLines(dir), (e) => (e.seq === 5 ? { ...e, fields: { ...e.fields, driver: 'none' } } : e));
    writeLines(dir, rewritten);
    // Checkpoint entry 11 signs entry 10: the first place the new chain meets a signature.
    expect(await verifyAudit(dir, keys.publicKey)).toMatchObject({ ok: false, line: 11, seq: 10, reason: expect.stringMatching(/disagrees with the signed checkpoint.*rewritten/) });
  });

  it('finds a rewritten checkpoint by its signature', async () => {
    const dir = tempDir();
    const keys = await writeSampleLog(dir, 5);
    const rewritten = rewrite(readLines(dir), (e) => e);
    // Point every checkpoint at the new hashes: only the key could sign them.
    const forged = rewrite(rewritten, (e, prevHash, lastHash) => (e.type === 'checkpoint' ? { ...e, fields: { ...e.fields, hash: lastHash, signature: Buffer.alloc(64, 1).toString('base64') } } : e));
    writeLines(dir, forged);
    expect(await verifyAudit(dir, keys.publicKey)).toMatchObject({ ok: false, line: 11, seq: 11, reason: expect.stringMatching(/signature is not valid/) });
  });

  it('fails every checkpoint under another runner key', async () => {
    const dir = tempDir();
    await writeSampleLog(dir, 3);
    const stranger = await makeKeys();
    expect(await verifyAudit(dir, stranger.publicKey)).toMatchObject({ ok: false, line: 11, reason: expect.stringMatching(/signature is not valid/) });
  });

  it('with the control plane copies, catches checkpoints dropped from a rewrite and entries cut from the end', async () => {
    const dir = tempDir();
    const held: AuditCheckpoint[] = [];
    const keys = await writeSampleLog(dir, 5, { onCheckpoint: (cp) => held.push(cp) });
    const original = readLines(dir);

    const withoutCheckpoints = rewrite(
      original.filter((l) => !l.includes('"type":"checkpoint"')),
      (e) => (e.seq === 5 ? { ...e, fields: { ...e.fields, driver: 'none' } } : e),
      { renumber: true },
    );
    writeLines(dir, withoutCheckpoints);
    expect((await verifyAudit(dir, keys.publicKey)).ok).toBe(true); // the log alone cannot tell
    expect(await verifyAudit(dir, keys.publicKey, { checkpoints: held })).toMatchObject({ ok: false, seq: held[0]!.seq, reason: expect.stringMatching(/held by the control plane/) });

    writeLines(dir, original.slice(0, 15));
    expect(await verifyAudit(dir, keys.publicKey, { checkpoints: held })).toMatchObject({ ok: false, seq: 21, reason: expect.stringMatching(/ends at entry 15.*cut from the end/) });
  });
});

/** Recomputes every hash and prev after `edit`, as an attacker without the signing key would. */
function rewrite(lines: string[], edit: (e: AuditEntry, prevHash: string, lastHash: string) => AuditEntry, options: { renumber?: boolean } = {}): string[] {
  let prev = GENESIS_HASH;
  return lines.map((line, i) => {
    const original = JSON.parse(line) as AuditEntry;
    const base = { ...original, seq: options.renumber ? i + 1 : original.seq };
    const { hash: _h, ...rest } = edit(base, prev, prev);
    const body = { ...rest, prev };
    const entry = { ...body, hash: computeEntryHash(body) };
    prev = entry.hash;
    return encodeEntry(entry);
  });
}

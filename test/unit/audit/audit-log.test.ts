import { appendFileSync, readFileSync, readdirSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../../src/audit/audit-log.js';
import { GENESIS_HASH, checkpointSignatureValid, type AuditCheckpoint } from '../../../src/audit/audit-entry.js';
import { readAudit } from '../../../src/audit/read-audit.js';
import { verifyAudit } from '../../../src/audit/verify-audit.js';
import { isRunnerError } from '../../../src/util/errors.js';
import { makeKeys, makeTempDir } from './audit-fixtures.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});
function tempDir(): string {
  const t = makeTempDir();
  cleanups.push(t.remove);
  return t.dir;
}
function lines(dir: string, name = 'audit-000001.jsonl'): string[] {
  return readFileSync(join(dir, name), 'utf8').split('\n').filter(Boolean);
}

describe('AuditLog', () => {
  it('chains entries by hash and returns what it stored', async () => {
    const dir = tempDir();
    const keys = await makeKeys();
    const log = await AuditLog.open({ dir, ...keys });
    const a = log.append({ type: 'start' });
    const b = log.append({ type: 'call.received', callId: 'c1', sessionId: 's1', tool: 'bash' });
    expect(a.seq).toBe(1);
    expect(a.prev).toBe(GENESIS_HASH);
    expect(b.seq).toBe(2);
    expect(b.prev).toBe(a.hash);
    expect(b).toMatchObject({ type: 'call.received', callId: 'c1', sessionId: 's1', fields: { tool: 'bash' } });
    await log.close();
    const stored = lines(dir).map((l) => JSON.parse(l));
    expect(stored[1]).toEqual(b);
    expect(stored.at(-1)).toMatchObject({ type: 'checkpoint', fields: { seq: 2, hash: b.hash, final: true } });
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'audit-000001.jsonl')).mode & 0o777).toBe(0o600);
  });

  it('signs a checkpoint every N entries and hands it to onCheckpoint', async () => {
    const dir = tempDir();
    const keys = await makeKeys();
    const seen: AuditCheckpoint[] = [];
    const log = await AuditLog.open({ dir, ...keys, checkpointEvery: 3, onCheckpoint: (cp) => seen.push(cp) });
    for (let i = 0; i < 7; i += 1) log.append({ type: 'call.received', callId: `c${i}` });
    // entries 1-3, checkpoint 4 (signs 3), entries 5-7, checkpoint 8 (signs 7), entry 9;
    // both are in the file already, and handed over once synced, in order
    expect(lines(dir).filter((l) => l.includes('"type":"checkpoint"'))).toHaveLength(2);
    expect(seen).toEqual([]);
    await log.flush();
    expect(seen.map((cp) => cp.seq)).toEqual([3, 7]);
    for (const cp of seen) expect(checkpointSignatureValid(keys.publicKey, cp)).toBe(true);
    await log.close();
    expect(seen.map((cp) => cp.seq)).toEqual([3, 7, 9]);
    expect(await verifyAudit(dir, keys.publicKey)).toMatchObject({ ok: true, entries: 10, checkpoints: 3, lastCheckpointSeq: 9 });
  });

  it('hands checkpoints over in order when an explicit one follows one still syncing', async () => {
    const dir = tempDir();
    const keys = await makeKeys();
    const seen: number[] = [];
    const log = await AuditLog.open({ dir, ...keys, checkpointEvery: 2, onCheckpoint: (cp) => seen.push(cp.seq) });
    log.append({ type: 'call.received', callId: 'c1' });
    log.append({ type: 'call.result', callId: 'c1' }); // checkpoint of seq 2, syncing in the background
    log.append({ type: 'call.received', callId: 'c2' });
    expect(log.checkpoint()?.seq).toBe(4); // on disk when it returns
    await log.flush();
    expect(seen).toEqual([2, 4]);
    await log.close();
  });

  it('encodes a value that tries to forge a second entry inside its own line', async () => {
    const dir = tempDir();
    const keys = await makeKeys();
    const log = await AuditLog.open({ dir, ...keys });
    log.append({ type: 'start' });
    const forged = `x"}\n{"seq":3,"time":"2020-01-01T00:00:00.000Z","type":"stop","fields":{},"prev":"${'0'.repeat(64)}","hash":"${'0'.repeat(64)}"}\n`;
    log.append({ type: 'call.refused', callId: 'c1', reason: forged, ['"injected"']: '\u2028\u0000' });
    await log.close();
    const stored = lines(dir);
    expect(stored).toHaveLength(3);
    expect(JSON.parse(stored[1]!).fields.reason).toBe(forged);
    expect(JSON.parse(stored[1]!).fields['"injected"']).toBe('\u2028\u0000');
    const entries = [];
    for await (const e of readAudit(dir)) entries.push(e);
    expect(entries.map((e) => e.type)).toEqual(['start', 'call.refused', 'checkpoint']);
    expect(await verifyAudit(dir, keys.publicKey)).toMatchObject({ ok: true, entries: 3 });
  });

  it('refuses reserved types so that no caller can write a checkpoint', async () => {
    const dir = tempDir();
    const log = await AuditLog.open({ dir, ...(await makeKeys()) });
    expect(() => log.append({ type: 'checkpoint', seq: 1 })).toThrowError(/reserved/);
    expect(() => log.append({ type: 'Bad Type' })).toThrowError(/reserved or malformed/);
    await log.close();
  });

  it('rotates by size and keeps the chain across files', async () => {
    const dir = tempDir();
    const keys = await makeKeys();
    const log = await AuditLog.open({ dir, ...keys, maxFileBytes: 2000 });
    for (let i = 0; i < 40; i += 1) log.append({ type: 'call.received', callId: `call-${i}`, tool: 'bash' });
    await log.close();
    const files = readdirSync(dir).sort();
    expect(files.length).toBeGreaterThan(2);
    for (const f of files) expect(statSync(join(dir, f)).size).toBeLessThanOrEqual(2000);
    const lastOfFirst = JSON.parse(lines(dir, files[0]).at(-1)!);
    const firstOfSecond = JSON.parse(lines(dir, files[1]).at(0)!);
    expect(firstOfSecond.prev).toBe(lastOfFirst.hash);
    expect(firstOfSecond.seq).toBe(lastOfFirst.seq + 1);
    expect(await verifyAudit(dir, keys.publicKey)).toMatchObject({ ok: true, files: files.length });
  });

  it('reopens a cleanly closed log without a recovered entry and continues the chain', async () => {
    const dir = tempDir();
    const keys = await makeKeys();
    const first = await AuditLog.open({ dir, ...keys });
    first.append({ type: 'start' });
    await first.close();
    const second = await AuditLog.open({ dir, ...keys });
    const next = second.append({ type: 'start' });
    expect(next.seq).toBe(3);
    await second.close();
    expect(lines(dir).map((l) => JSON.parse(l).type)).toEqual(['start', 'checkpoint', 'start', 'checkpoint']);
    expect((await verifyAudit(dir, keys.publicKey)).ok).toBe(true);
  });

  it('cuts a torn last line at open and records how many bytes it cut', async () => {
    const dir = tempDir();
    const keys = await makeKeys();
    const log = await AuditLog.open({ dir, ...keys });
    log.append({ type: 'start' });
    log.append({ type: 'call.received', callId: 'c1' });
    await log.flush();
    // What a power loss leaves: the start of a line and no newline.
    const torn = '{"callId":"c2","fields":{},"hash":"ab';
    appendFileSync(join(dir, 'audit-000001.jsonl'), torn);
    const before = await verifyAudit(dir, keys.publicKey);
    expect(before).toMatchObject({ ok: false, line: 3, reason: expect.stringMatching(/incomplete/) });

    const reopened = await AuditLog.open({ dir, ...keys });
    await reopened.close();
    const stored = lines(dir).map((l) => JSON.parse(l));
    expect(stored[2]).toMatchObject({ seq: 3, type: 'recovered', fields: { bytesCut: Buffer.byteLength(torn), file: 'audit-000001.jsonl' } });
    expect(await verifyAudit(dir, keys.publicKey)).toMatchObject({ ok: true, entries: 4 });
  });

  it('finds the chain head in the previous file when the newest one holds only a torn line', async () => {
    const dir = tempDir();
    const keys = await makeKeys();
    const log = await AuditLog.open({ dir, ...keys, maxFileBytes: 600 });
    for (let i = 0; i < 6; i += 1) log.append({ type: 'call.received', callId: `c${i}` });
    await log.flush();
    const files = readdirSync(dir).sort();
    const newest = join(dir, files.at(-1)!);
    truncateSync(newest, 10);
    const reopened = await AuditLog.open({ dir, ...keys, maxFileBytes: 600 });
    const entry = reopened.head;
    await reopened.close();
    const stored = lines(dir, files.at(-1)).map((l) => JSON.parse(l));
    expect(stored[0]).toMatchObject({ type: 'recovered', fields: { bytesCut: 10 } });
    expect(entry.seq).toBe(stored[0].seq);
    expect(await verifyAudit(dir, keys.publicKey)).toMatchObject({ ok: true });
  });

  it('throws config_invalid when the public key does not belong to the signing key', async () => {
    const dir = tempDir();
    const a = await makeKeys();
    const b = await makeKeys();
    await expect(AuditLog.open({ dir, signingKey: a.signingKey, publicKey: b.publicKey })).rejects.toSatisfy((err) => isRunnerError(err, 'config_invalid'));
  });
});

import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEntry } from '../../../src/audit/audit-entry.js';
import { AuditLog } from '../../../src/audit/audit-log.js';
import { listAuditFiles } from '../../../src/audit/audit-files.js';
import { followAudit, readAudit, tailAudit } from '../../../src/audit/read-audit.js';
import { isRunnerError } from '../../../src/util/errors.js';
import { makeKeys, makeTempDir } from './audit-fixtures.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

async function collect(iter: AsyncIterable<AuditEntry>): Promise<AuditEntry[]> {
  const all: AuditEntry[] = [];
  for await (const e of iter) all.push(e);
  return all;
}

/** A rotated log of 30 calls, one an hour from 2024-05-01T00:00Z, alternating two sessions. */
async function hourlyLog() {
  const tmp = makeTempDir();
  cleanups.push(tmp.remove);
  let t = Date.parse('2024-05-01T00:00:00Z');
  const keys = await makeKeys();
  const log = await AuditLog.open({ dir: tmp.dir, ...keys, clock: () => t, maxFileBytes: 1500, checkpointEvery: 1000 });
  for (let i = 0; i < 30; i += 1) {
    log.append({ type: i % 3 === 0 ? 'call.refused' : 'call.received', callId: `c${i}`, sessionId: `s${i % 2}` });
    t += 3600_000;
  }
  return { dir: tmp.dir, log, keys };
}

describe('readAudit, tailAudit, followAudit', () => {
  it('reads across rotated files with time, call, session and type filters', async () => {
    const { dir, log } = await hourlyLog();
    await log.close();
    expect(listAuditFiles(dir).length).toBeGreaterThan(3);
    expect(await collect(readAudit(dir))).toHaveLength(31);
    const range = await collect(readAudit(dir, { since: '2024-05-01T05:00:00Z', until: new Date('2024-05-01T08:00:00Z') }));
    expect(range.map((e) => e.callId)).toEqual(['c5', 'c6', 'c7']);
    expect((await collect(readAudit(dir, { callId: 'c17' }))).map((e) => e.seq)).toEqual([18]);
    expect(await collect(readAudit(dir, { sessionId: 's1' }))).toHaveLength(15);
    expect(await collect(readAudit(dir, { type: 'call.refused' }))).toHaveLength(10);
    await expect(collect(readAudit(dir, { since: 'yesterday' }))).rejects.toSatisfy((err) => isRunnerError(err, 'usage'));
  });

  it('tails the newest entries across files and skips a torn line', async () => {
    const { dir, log } = await hourlyLog();
    await log.flush();
    const newest = listAuditFiles(dir).at(-1)!;
    appendFileSync(newest.path, '{"seq":31,"ty');
    const last = await tailAudit(dir, 12);
    expect(last.map((e) => e.seq)).toEqual(Array.from({ length: 12 }, (_, i) => 19 + i));
    expect(await tailAudit(dir, 0)).toEqual([]);
  });

  it('follows new entries across a rotation and returns when aborted', async () => {
    const { dir, log } = await hourlyLog();
    const controller = new AbortController();
    const seen: AuditEntry[] = [];
    const afterSeq = log.head.seq;
    const following = (async () => {
      for await (const e of followAudit(dir, controller.signal, { afterSeq })) {
        seen.push(e);
        if (seen.length === 8) controller.abort();
      }
    })();
    const before = listAuditFiles(dir).length;
    for (let i = 0; i < 8; i += 1) log.append({ type: 'call.received', callId: `late-${i}` });
    await following;
    expect(listAuditFiles(dir).length).toBeGreaterThan(before);
    expect(seen.map((e) => e.callId)).toEqual(Array.from({ length: 8 }, (_, i) => `late-${i}`));
    await log.close();
  });
});

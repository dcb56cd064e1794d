import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../../src/audit/audit-log.js';
import { verifyAudit } from '../../../src/audit/verify-audit.js';
import { bindAuditMetrics } from '../../../src/metrics/audit-metrics.js';
import { createMetrics } from '../../../src/metrics/metrics.js';
import { RunnerError, isRunnerError } from '../../../src/util/errors.js';
import { makeKeys, makeTempDir } from '../../unit/audit/audit-fixtures.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

describe('audit log on a full disk', () => {
  it('fails closed: append throws audit_failed, healthy is false, failed is emitted once', async () => {
    const tmp = makeTempDir('audit-full-');
    cleanups.push(tmp.remove);
    const mnt = join(tmp.dir, 'mnt');
    mkdirSync(mnt);
    // A real file system that runs out of space: a 64 KiB tmpfs (the tests run as root).
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', mnt]);
    cleanups.push(() => execFileSync('umount', ['-l', mnt]));
    const dir = join(mnt, 'audit');
    const keys = await makeKeys();
    const log = await AuditLog.open({ dir, ...keys, syncIntervalMs: 0 });
    const failures: RunnerError[] = [];
    log.on('failed', (err) => failures.push(err));
    const metrics = createMetrics({ processMetrics: false });
    bindAuditMetrics(metrics, log);
    expect(await metrics.registry.getSingleMetricAsString('sandbox_runner_audit_healthy')).toMatch(/sandbox_runner_audit_healthy 1$/);

    let thrown: unknown;
    let written = 0;
    for (let i = 0; i < 10_000 && thrown === undefined; i += 1) {
      try {
        log.append({ type: 'call.result', callId: `call-${i}`, status: 'completed', note: 'y'.repeat(900) });
        written += 1;
      } catch (err) {
        thrown = err;
      }
    }
    expect(written).toBeGreaterThan(0);
    expect(isRunnerError(thrown, 'audit_failed')).toBe(true);
    expect((thrown as RunnerError).message).toMatch(/ENOSPC.*free space/);
    expect(log.healthy).toBe(false);
    expect(failures).toHaveLength(1);
    expect(() => log.append({ type: 'call.received', callId: 'after' })).toThrow(thrown as Error);
    expect(failures).toHaveLength(1);
    expect(await metrics.registry.getSingleMetricAsString('sandbox_runner_audit_healthy')).toMatch(/sandbox_runner_audit_healthy 0$/);
    await log.close();

    // What was written is whole: the half-written line was cut back.
    const text = readFileSync(join(dir, 'audit-000001.jsonl'), 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    expect(await verifyAudit(dir, keys.publicKey)).toMatchObject({ ok: true, entries: written });
  });
});

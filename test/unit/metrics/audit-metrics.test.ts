import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../../src/audit/audit-log.js';
import { bindAuditMetrics } from '../../../src/metrics/audit-metrics.js';
import { createMetrics } from '../../../src/metrics/metrics.js';
import { makeKeys, makeTempDir } from '../audit/audit-fixtures.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

describe('bindAuditMetrics', () => {
  it('counts signed checkpoints and stops counting once detached', async () => {
    const tmp = makeTempDir();
    cleanups.push(tmp.remove);
    const log = await AuditLog.open({ dir: tmp.dir, ...(await makeKeys()), checkpointEvery: 2 });
    const metrics = createMetrics({ processMetrics: false });
    const detach = bindAuditMetrics(metrics, log);
    for (let i = 0; i < 4; i += 1) log.append({ type: 'call.received', callId: `c${i}` });
    // Counted once on disk.
    await log.flush();
    expect(await metrics.registry.getSingleMetricAsString('sandbox_runner_audit_checkpoints_total')).toMatch(/ 2$/);
    detach();
    await log.close();
    expect(await metrics.registry.getSingleMetricAsString('sandbox_runner_audit_checkpoints_total')).toMatch(/ 2$/);
    expect(await metrics.registry.getSingleMetricAsString('sandbox_runner_audit_healthy')).toMatch(/ 1$/);
  });
});

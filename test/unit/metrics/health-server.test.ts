import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { HealthServer, type Readiness } from '../../../src/metrics/health-server.js';
import { createMetrics, trackCall } from '../../../src/metrics/metrics.js';
import { isRunnerError } from '../../../src/util/errors.js';

const servers: HealthServer[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()!.stop();
});

async function start(readiness: () => Readiness = () => ({ ready: true, reasons: [] })) {
  const metrics = createMetrics({ defaultLabels: { runner: 'r-test' } });
  const server = new HealthServer({ port: 0, metrics, readiness });
  servers.push(server);
  const address = await server.start();
  return { metrics, server, address };
}

/** Runs Debian's promtool on a scraped page: exit 0 means it parsed and linted clean. */
function promtoolCheck(page: string): { status: number | null; output: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: page, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describe('HealthServer', () => {
  it('listens on 127.0.0.1 by default and answers /healthz', async () => {
    const { address } = await start();
    expect(address.host).toBe('127.0.0.1');
    const res = await fetch(`${address.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ok\n');
  });

  it('answers /readyz with 503 and the reasons until ready', async () => {
    let state: Readiness = { ready: false, reasons: ['not connected to the control plane', 'audit log failed (ENOSPC)'] };
    const { address } = await start(() => state);
    const notReady = await fetch(`${address.url}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.text()).toBe('not ready\n- not connected to the control plane\n- audit log failed (ENOSPC)\n');
    state = { ready: true, reasons: [] };
    const ready = await fetch(`${address.url}/readyz`);
    expect(ready.status).toBe(200);
  });

  it('serves /metrics that promtool parses, with the runner series', async () => {
    const { metrics, address } = await start();
    const done = trackCall(metrics, 'bash', 'control-plane');
    done('completed');
    trackCall(metrics, 'javascript', 'managed-agents')('timed_out');
    trackCall(metrics, 'bash', 'control-plane'); // still in flight
    metrics.refusalsTotal.inc({ reason: 'signature' });
    metrics.streamedBytesTotal.inc({ stream: 'stdout' }, 4096);
    metrics.sandboxesLive.set({ driver: 'bwrap' }, 2);
    metrics.sessionsLive.set(1);
    metrics.reconnectsTotal.inc({ connector: 'websocket' });
    metrics.connected.set({ connector: 'websocket' }, 1);
    metrics.outboxDepth.set(3);
    metrics.auditHealthy.set(0);

    const res = await fetch(`${address.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const page = await res.text();
    const check = promtoolCheck(page);
    expect(check.output).toBe('');
    expect(check.status).toBe(0);
    expect(page).toContain('sandbox_runner_calls_total{tool="bash",status="completed",source="control-plane",runner="r-test"} 1');
    expect(page).toContain('sandbox_runner_calls_total{tool="javascript",status="timed_out",source="managed-agents",runner="r-test"} 1');
    expect(page).toContain('sandbox_runner_calls_in_flight{source="control-plane",runner="r-test"} 1');
    expect(page).toContain('sandbox_runner_call_duration_seconds_count{runner="r-test",tool="bash",source="control-plane"} 1');
    expect(page).toContain('sandbox_runner_refusals_total{reason="signature",runner="r-test"} 1');
    expect(page).toContain('sandbox_runner_streamed_bytes_total{stream="stdout",runner="r-test"} 4096');
    expect(page).toContain('sandbox_runner_audit_healthy{runner="r-test"} 0');
    expect(page).toContain('process_cpu_seconds_total');
  });

  it('keeps two registries apart', async () => {
    const a = createMetrics({ processMetrics: false });
    const b = createMetrics({ processMetrics: false });
    a.outboxDepth.set(5);
    expect(await b.registry.getSingleMetricAsString('sandbox_runner_outbox_depth')).toContain('sandbox_runner_outbox_depth 0');
  });

  it('answers 404 and 405, and refuses a taken port with a sentence', async () => {
    const { address } = await start();
    expect((await fetch(`${address.url}/nope`)).status).toBe(404);
    expect((await fetch(`${address.url}/metrics`, { method: 'POST' })).status).toBe(405);
    const clash = new HealthServer({ port: address.port, metrics: createMetrics({ processMetrics: false }), readiness: () => ({ ready: true, reasons: [] }) });
    await expect(clash.start()).rejects.toSatisfy((err) => isRunnerError(err, 'config_invalid') && /EADDRINUSE/.test((err as Error).message));
  });

  it('stops even with a keep-alive scraper connected', async () => {
    const { server, address } = await start();
    await fetch(`${address.url}/metrics`, { headers: { connection: 'keep-alive' } });
    await server.stop();
    await expect(fetch(`${address.url}/healthz`)).rejects.toThrow();
  });
});

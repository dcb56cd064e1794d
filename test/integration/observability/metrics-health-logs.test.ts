import { execFile } from 'node:child_process';
import { chmod } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCli, type RunningProcess } from '../../helpers/processes.js';
import { Spine } from '../../helpers/spine.js';

/** Runs `promtool check metrics` on a scrape, as Prometheus's own parser and linter. */
function promtool(page: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = execFile('promtool', ['check', 'metrics'], (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, output: stdout + stderr }),
    );
    child.stdin!.end(page);
  });
}

// A real runner process (started through the CLI with --log-level debug) and a
// real control plane: what an operator's Prometheus, probes and log collector see.
describe('metrics, health and logs of a running daemon', () => {
  let spine: Spine;
  let runnerId: string;
  let runner: RunningProcess;
  let url: string;

  beforeAll(async () => {
    spine = await Spine.start();
    await chmod(spine.dir, 0o711);
    const paired = await spine.pair();
    runnerId = paired.runnerId;
    runner = startCli(['start', '--state-dir', paired.stateDir, '--log-level', 'debug'], {
      SANDBOX_RUNNER_HEALTH__PORT: '0',
      SANDBOX_RUNNER_POLICY__TOOLS__DENY: '["exec"]',
      // The sandbox gauge is counted exactly here; the spare sandbox made ahead
      // (one more live sandbox, coming and going between calls) has its own tests.
      SANDBOX_RUNNER_SANDBOX__SPARE: 'false',
    });
    spine.runners.push(runner);
    await spine.waitConnected(runnerId);
    url = (await runner.waitForOutput(/"url":"http:\/\/127\.0\.0\.1:\d+"/)).match(/http:\/\/[^"]+/)![0];
  });
  afterAll(async () => {
    await spine?.stop();
  });

  it('serves /metrics that promtool parses, with calls, durations, sandboxes, sessions and refusals', async () => {
    expect((await spine.api.call(runnerId, { name: 'javascript', input: { code: 'console.log("x".repeat(100)); 1' } })).body.status).toBe('completed');
    expect((await spine.api.call(runnerId, { name: 'bash', input: { command: 'echo hello' } })).body.status).toBe('completed');
    expect((await spine.api.call(runnerId, { name: 'javascript', input: { code: 'throw new Error("no")' } })).body.status).toBe('failed');
    expect((await spine.api.call(runnerId, { name: 'exec', input: { argv: ['true'] } })).body.isError).toBe(true);
    const open = await spine.api.request('POST', `/v1/runners/${runnerId}/sessions`, { driver: 'bwrap' });
    expect(open.status).toBe(201);
    expect((await spine.api.call(runnerId, { name: 'bash', input: { command: 'echo in-session' }, sessionId: open.body.sessionId })).body.content).toBe('in-session');

    const during = await (await fetch(`${url}/metrics`)).text();
    expect(during).toMatch(/^sandbox_runner_sessions_live 1$/m);
    expect(during).toMatch(/^sandbox_runner_sandboxes_live\{driver="bwrap"\} 1$/m);
    expect((await spine.api.request('DELETE', `/v1/sessions/${open.body.sessionId}`)).status).toBe(204);

    const res = await fetch(`${url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const page = await res.text();
    const checked = await promtool(page);
    expect(checked, checked.output).toMatchObject({ code: 0 });

    expect(page).toMatch(/^sandbox_runner_calls_total\{tool="javascript",status="completed",source="control-plane"\} 1$/m);
    expect(page).toMatch(/^sandbox_runner_calls_total\{tool="javascript",status="failed",source="control-plane"\} 1$/m);
    expect(page).toMatch(/^sandbox_runner_calls_total\{tool="bash",status="completed",source="control-plane"\} 2$/m);
    expect(page).toMatch(/^sandbox_runner_call_duration_seconds_bucket\{le="\+Inf",tool="bash",source="control-plane"\} 2$/m);
    expect(page).toMatch(/^sandbox_runner_call_duration_seconds_count\{tool="javascript",source="control-plane"\} \d+$/m);
    expect(page).toMatch(/^sandbox_runner_calls_in_flight\{source="control-plane"\} 0$/m);
    expect(page).toMatch(/^sandbox_runner_sessions_live 0$/m);
    expect(page).toMatch(/^sandbox_runner_sandboxes_live\{driver="bwrap"\} 0$/m);
    expect(page).toMatch(/^sandbox_runner_refusals_total\{reason="policy_denied"\} 1$/m);
    expect(page).toMatch(/^sandbox_runner_streamed_bytes_total\{stream="output"\} [1-9]\d*$/m);
    expect(page).toMatch(/^sandbox_runner_outbox_depth \d+$/m);
    expect(page).toMatch(/^sandbox_runner_connected\{connector="control-plane"\} 1$/m);
    expect(page).toMatch(/^# TYPE sandbox_runner_reconnects_total counter$/m);
    expect(page).toMatch(/^sandbox_runner_audit_healthy 1$/m);
  });

  it('logs pino JSON with the call id on the lines of a call, at the level asked for', async () => {
    const r = await spine.api.call(runnerId, { name: 'bash', input: { command: 'echo logged' } });
    const lines = runner.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.every((l) => typeof l.level === 'number' && typeof l.time === 'number' && typeof l.msg === 'string')).toBe(true);
    // --log-level debug: debug lines (20) are written.
    expect(lines.some((l) => l.level === 20)).toBe(true);
    const ofCall = lines.filter((l) => l.callId === r.body.id);
    expect(ofCall.length, 'log lines carrying the call id').toBeGreaterThan(0);
  });

  it('answers /healthz 200, /readyz 200 while connected and 503 with the reason when the control plane is gone', async () => {
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${url}/readyz`);
    expect([ready.status, await ready.text()]).toEqual([200, 'ready\n']);
    await spine.cp.stop();
    await runner.waitForOutput(/"level":(30|40).*disconnected|connection.*lost|reconnect/i);
    const down = await fetch(`${url}/readyz`);
    expect(down.status).toBe(503);
    expect(await down.text()).toContain('not connected to the control plane');
    expect(await (await fetch(`${url}/metrics`)).text()).toMatch(/^sandbox_runner_connected\{connector="control-plane"\} 0$/m);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });
});

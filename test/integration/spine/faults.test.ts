import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../helpers/control-plane-api.js';
import { closedPort, runCli, startCli, waitUntil, type RunningProcess } from '../../helpers/processes.js';

// Real processes killed for real: the control plane and the runner are both children here.
describe('faults: processes killed in the middle of a call', () => {
  let dir: string;
  let port: number;
  let cp: RunningProcess;
  let api: ApiClient;
  let runnerId: string;
  let stateDir: string;
  const runners: RunningProcess[] = [];

  const startControlPlane = async () => {
    cp = startCli(['control-plane', '--listen', `127.0.0.1:${port}`, '--data-dir', path.join(dir, 'cp')]);
    await cp.waitForOutput(/control plane listening/);
    api = new ApiClient(`http://127.0.0.1:${port}`, (await readFile(path.join(dir, 'cp', 'admin-token'), 'utf8')).trim());
  };
  const startRunner = async () => {
    const r = startCli(['start', '--state-dir', stateDir], {
      SANDBOX_RUNNER_HEALTH__PORT: '0',
      SANDBOX_RUNNER_CONTROL_PLANE__RECONNECT_INITIAL_MS: '100',
      SANDBOX_RUNNER_CONTROL_PLANE__RECONNECT_MAX_MS: '1000',
      SANDBOX_RUNNER_CONTROL_PLANE__HEARTBEAT_MS: '500',
    });
    runners.push(r);
    await waitConnected(true);
    await r.waitForOutput(/connected to the control plane/);
    return r;
  };
  const waitConnected = (want: boolean, timeoutMs = 20_000) =>
    waitUntil(async () => ((await api.runners()).some((r) => r.id === runnerId && r.connected === want) ? true : undefined), timeoutMs, `connected=${want}`);

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'faults-'));
    port = await closedPort();
    await startControlPlane();
    stateDir = path.join(dir, 'runner');
    const token = await api.pairingToken();
    const r = await runCli(['pair', '--url', `http://127.0.0.1:${port}`, '--token', token, '--state-dir', stateDir, '--json']);
    runnerId = JSON.parse(r.stdout).runnerId;
  });
  afterAll(async () => {
    await Promise.all(runners.map((r) => r.stop()));
    await cp?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('a control plane killed mid-call and started again gets the runner back and the result exactly once', async () => {
    const runner = await startRunner();
    const busy = 'const t = Date.now(); while (Date.now() - t < 2500) {} "finished"';
    const started = await api.call(runnerId, { name: 'javascript', input: { code: busy, timeoutMs: 20_000 } }, '?wait=false');
    expect(started.status).toBe(202);
    const callId = started.body.id as string;
    await waitUntil(async () => (await api.request('GET', `/v1/tool-calls/${callId}`)).body.status === 'running', 10_000, 'running');

    await cp.kill('SIGKILL');
    await startControlPlane();
    // Bounded: the runner must be back within the 20 s the wait allows (backoff capped at 1 s here).
    await waitConnected(true);

    const done = await waitUntil(async () => {
      const r = await api.request('GET', `/v1/tool-calls/${callId}`);
      return r.body.status === 'running' ? undefined : r.body;
    }, 20_000, 'call result after restart');
    expect(done).toMatchObject({ id: callId, status: 'completed', content: 'finished', isError: false });

    // Exactly once: the event stream holds one result, and the runner's outbox is empty.
    const events = await (await fetch(`http://127.0.0.1:${port}/v1/tool-calls/${callId}/events`, { headers: { authorization: `Bearer ${(await readFile(path.join(dir, 'cp', 'admin-token'), 'utf8')).trim()}` } })).text();
    expect(events.match(/event: result/g)).toHaveLength(1);
    await runner.stop();
    await waitConnected(false);
    const journal = await readFile(path.join(stateDir, 'calls.jsonl'), 'utf8');
    const acked = journal.split('\n').filter((l) => l.includes('"op":"ack"') && l.includes(callId));
    expect(acked.length).toBeGreaterThanOrEqual(1);
  });

  it('a runner killed mid-call reports that call as failed after restart and never runs it again', async () => {
    const runner = await startRunner();
    const started = await api.call(runnerId, { name: 'javascript', input: { code: 'const t = Date.now(); while (Date.now() - t < 5000) {} "late"', timeoutMs: 20_000 } }, '?wait=false');
    const callId = started.body.id as string;
    // Killed only once the runner has recorded the call as begun (a call it never got is simply redelivered).
    await waitUntil(async () => (await readFile(path.join(stateDir, 'calls.jsonl'), 'utf8').catch(() => '')).includes(`"op":"begin","id":"${callId}"`), 10_000, 'call begun');
    await runner.kill('SIGKILL');
    await waitConnected(false);
    const again = await startRunner();
    const done = await waitUntil(async () => {
      const r = await api.request('GET', `/v1/tool-calls/${callId}`);
      return r.body.status === 'running' ? undefined : r.body;
    }, 20_000, 'orphan result');
    expect(done).toMatchObject({ status: 'failed', isError: true });
    expect(done.content).toMatch(/runner restarted while this call ran/);
    await again.stop();
    await waitConnected(false);
  });

  it('a control plane that stops answering is dropped on a missed pong, and the runner comes back', async () => {
    const runner = await startRunner();
    cp.child.kill('SIGSTOP');
    try {
      await runner.waitForOutput(/missed a heartbeat/, 10_000);
    } finally {
      cp.child.kill('SIGCONT');
    }
    await runner.waitForOutput(/connected to the control plane[\s\S]*connected to the control plane/, 20_000);
    await waitConnected(true);
    const r = await api.call(runnerId, { name: 'javascript', input: { code: '"after the stall"' } });
    expect(r.body.content).toBe('after the stall');
    await runner.stop();
  });
});

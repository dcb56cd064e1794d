import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../helpers/processes.js';
import { E2E, pidsWithMarker, text } from './harness.js';

// POST /v1/tool-calls/{id}/cancel through the real control plane to a real runner:
// the call ends `cancelled` and every process it started is gone from the host.
describe('cancel through the control-plane API', () => {
  let e2e: E2E;
  beforeAll(async () => {
    e2e = await E2E.start();
  });
  afterAll(() => e2e?.stop());

  /** A unique `sleep` argument, so the test finds exactly its own processes in /proc. */
  let n = 0;
  const marker = () => `100.${process.pid}${++n}`;

  async function startAndCancel(command: string, markers: string[], extra: Record<string, unknown> = {}): Promise<void> {
    const id = await e2e.start('bash', { command }, extra);
    // Every process of the tree is running on the host before the cancel.
    await e2e.waitProcesses(id, markers);
    await e2e.waitAcceptedOnDisk(id);
    const t0 = performance.now();
    const r = await e2e.spine.api.request('POST', `/v1/tool-calls/${id}/cancel`);
    expect(r.status).toBe(202);
    const ended = await e2e.waitEnded(id);
    const tookMs = performance.now() - t0;
    expect(ended.status).toBe('cancelled');
    expect(ended.isError).toBe(true);
    // Checked the moment the call is reported cancelled: nothing of the tree is left.
    for (const m of markers) expect(await pidsWithMarker(m), `processes with ${m}`).toEqual([]);
    // Recorded for the report; the issue asks for "within a second".
    console.info(`cancel → cancelled and the tree gone in ${tookMs.toFixed(0)} ms`);
  }

  it('cancels `sleep 100` in a fresh sandbox', async () => {
    const m = marker();
    await startAndCancel(`sleep ${m}`, [m]);
    await waitUntil(async () => ((await e2e.sandboxDirs()).length === 0 ? true : undefined), 10_000, 'sandbox removed');
  });

  it('cancels a process tree: background jobs, a subshell, a setsid escapee and a nohup child', async () => {
    const [a, b, c, d] = [marker(), marker(), marker(), marker()];
    await startAndCancel(`sleep ${a} & (sleep ${b}) & setsid sleep ${c} & nohup sh -c 'sleep ${d}' >/dev/null 2>&1 & wait`, [a, b, c, d]);
  });

  it('cancels a command in a session; the shell says to restart, and after restart the workspace is intact', async () => {
    const sessionId = await e2e.openSession();
    await e2e.call('bash', { command: 'echo kept > /workspace/kept.txt' }, { sessionId });
    const m = marker();
    await startAndCancel(`sleep ${m} & sleep ${m}`, [m], { sessionId });
    const after = await e2e.call('bash', { command: 'echo alive' }, { sessionId });
    expect(after.isError).toBe(true);
    expect(text(after.content)).toMatch(/restart: true/);
    expect((await e2e.call('bash', { restart: true }, { sessionId })).isError).toBe(false);
    expect(text((await e2e.call('bash', { command: 'cat /workspace/kept.txt' }, { sessionId })).content)).toBe('kept');
    expect(await e2e.closeSession(sessionId)).toBe(204);
  });

  it('cancels an exec call', async () => {
    const m = marker();
    const id = await e2e.start('exec', { argv: ['sleep', m] });
    await e2e.waitProcesses(id, [m]);
    await e2e.waitAcceptedOnDisk(id);
    expect((await e2e.spine.api.request('POST', `/v1/tool-calls/${id}/cancel`)).status).toBe(202);
    expect((await e2e.waitEnded(id)).status).toBe('cancelled');
    expect(await pidsWithMarker(m)).toEqual([]);
  });
});

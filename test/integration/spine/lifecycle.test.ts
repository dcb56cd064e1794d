import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Spine } from '../../helpers/spine.js';
import { waitUntil } from '../../helpers/processes.js';

// SIGTERM drains: running calls finish (or are cancelled at the drain deadline)
// and their results reach the control plane before the process exits.
describe('lifecycle: SIGTERM drains', () => {
  let spine: Spine;
  let runnerId: string;
  let stateDir: string;

  beforeAll(async () => {
    spine = await Spine.start();
    ({ runnerId, stateDir } = await spine.pair());
  });
  afterAll(async () => {
    await spine?.stop();
  });

  const busy = (ms: number) => `const t = Date.now(); while (Date.now() - t < ${ms}) {} "done after ${ms} ms"`;
  // Running on the runner: it has journaled the call's start.
  const running = (id: string) =>
    waitUntil(async () => (await readFile(path.join(stateDir, 'calls.jsonl'), 'utf8').catch(() => '')).includes(`"op":"begin","id":"${id}"`), 30_000, 'call begun');

  it('lets a running call finish and delivers its result before exiting', async () => {
    const runner = await spine.startRunner(runnerId, stateDir, { SANDBOX_RUNNER_CALLS__DRAIN_TIMEOUT_MS: '20000' });
    const started = await spine.api.call(runnerId, { name: 'javascript', input: { code: busy(1500), timeoutMs: 20_000 } }, '?wait=false');
    await running(started.body.id);
    expect(await runner.stop()).toBe(0);
    expect(runner.output()).toMatch(/"msg":"draining"/);
    // Its own stop closing the connection is news, not a warning an operator must chase.
    const closed = runner.output().split('\n').filter((l) => l.includes('"msg":"control plane connection closed"'));
    expect(closed.map((l) => JSON.parse(l).level)).toEqual([30]);
    const record = (await spine.api.request('GET', `/v1/tool-calls/${started.body.id}`)).body;
    expect(record).toMatchObject({ status: 'completed', content: 'done after 1500 ms' });
    await spine.waitConnected(runnerId, false);
  });

  it('cancels a call still running at the drain deadline, and delivers that result', async () => {
    const runner = await spine.startRunner(runnerId, stateDir, { SANDBOX_RUNNER_CALLS__DRAIN_TIMEOUT_MS: '300' });
    const started = await spine.api.call(runnerId, { name: 'javascript', input: { code: busy(60_000), timeoutMs: 120_000 } }, '?wait=false');
    await running(started.body.id);
    expect(await runner.stop()).toBe(0);
    expect(runner.output()).toMatch(/drain deadline passed; cancelling the calls still running/);
    const record = (await spine.api.request('GET', `/v1/tool-calls/${started.body.id}`)).body;
    expect(record).toMatchObject({ status: 'cancelled', isError: true });
  });
});

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCli, type RunningProcess } from '../../helpers/processes.js';

// `npm start` runs `sandbox-runner dev`: a local control plane and a paired runner doing real work.
describe('sandbox-runner dev (npm start)', () => {
  let dir: string;
  let dev: RunningProcess;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'dev-'));
  });
  afterAll(async () => {
    await dev?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('pairs a runner, answers a first call, and prints a curl line that works', async () => {
    dev = startCli(['dev', '--dir', path.join(dir, '.dev'), '--port', '0']);
    const line = await dev.waitForOutput(/curl -s .*\/tool-calls/, 60_000);
    expect(dev.output()).toMatch(/first tool call \(javascript, in a V8 isolate\) answered/);
    expect(dev.output()).toContain('2 3 5 7 11 13 17 19 23 29');
    const url = line.match(/(http:\/\/127\.0\.0\.1:\d+\/v1\/runners\/[^/]+\/tool-calls)/)![1]!;
    const tokenFile = line.match(/cat ([^)]+)\)/)![1]!;
    const token = (await readFile(tokenFile, 'utf8')).trim();
    const body = line.match(/-d '([^']+)'/)![1]!;
    const res = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'completed', content: '[\n  2,\n  4,\n  6\n]' });
    expect(await dev.stop()).toBe(0);
  });
});

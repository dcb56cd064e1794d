import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Spine } from '../../helpers/spine.js';
import type { RunningProcess } from '../../helpers/processes.js';

// The real control plane, a real runner process, a real WebSocket, real isolated-vm.
describe('javascript tool calls through the HTTP API', () => {
  let spine: Spine;
  let runnerId: string;
  let runner: RunningProcess;

  beforeAll(async () => {
    spine = await Spine.start();
    const paired = await spine.pair();
    runnerId = paired.runnerId;
    runner = await spine.startRunner(runnerId, paired.stateDir);
  });
  afterAll(async () => {
    await spine?.stop();
  });

  it('advertises its tools and drivers', async () => {
    const r = (await spine.api.runners()).find((x) => x.id === runnerId)!;
    expect(r.capabilities.tools).toContain('javascript');
    expect(r.capabilities.drivers).toContain('isolate');
  });

  it('returns the last expression and the console output', async () => {
    const r = await spine.api.call(runnerId, { name: 'javascript', input: { code: 'console.log("side"); ({sum: [1,2,3].reduce((a,b)=>a+b)})' } });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ runnerId, name: 'javascript', status: 'completed', isError: false });
    expect(r.body.content).toEqual([
      { type: 'text', text: 'side\n' },
      { type: 'text', text: '{\n  "sum": 6\n}' },
    ]);
    expect(typeof r.body.durationMs).toBe('number');
  });

  it('ends an endless loop as timed_out, and the runner keeps serving', async () => {
    const r = await spine.api.call(runnerId, { name: 'javascript', input: { code: 'while(true){}', timeoutMs: 500 } });
    expect(r.body).toMatchObject({ status: 'timed_out', isError: true });
    expect(r.body.content).toMatch(/longer than 500 ms/);
    const ok = await spine.api.call(runnerId, { name: 'javascript', input: { code: '2 ** 10' } });
    expect(ok.body).toMatchObject({ status: 'completed', content: '1024' });
  });

  it('ends a memory bomb as failed with a clear message', async () => {
    const r = await spine.api.call(runnerId, { name: 'javascript', input: { code: 'let a=[]; for(;;) a.push(new Array(1e6).fill(0))', timeoutMs: 20_000 } });
    expect(r.body).toMatchObject({ status: 'failed', isError: true });
    expect(r.body.content).toMatch(/ran out of memory \(limit 64 MB\)/);
    expect((await spine.api.call(runnerId, { name: 'javascript', input: { code: '"alive"' } })).body.content).toBe('alive');
  });

  it('keeps process, require and the host out of reach', async () => {
    const r = await spine.api.call(runnerId, {
      name: 'javascript',
      input: { code: 'try { require("fs") } catch (e) { String(e) }' },
    });
    expect(r.body.content).toMatch(/ReferenceError: require is not defined/);
    const p = await spine.api.call(runnerId, { name: 'javascript', input: { code: 'typeof process + " " + typeof globalThis.constructor.constructor("return this")().process' } });
    expect(p.body.content).toBe('undefined undefined');
  });

  it('answers a call whose id was seen before with the stored result, without running it again', async () => {
    const id = 'toolu_dedupe_1';
    const first = await spine.api.call(runnerId, { id, name: 'javascript', input: { code: 'Math.random()' } });
    const second = await spine.api.call(runnerId, { id, name: 'javascript', input: { code: 'Math.random()' } });
    expect(second.body.content).toBe(first.body.content);
  });

  // The call runs on for 1.5 s after its output, so the client subscribes while it runs
  // (a client that comes after the end gets only the result).
  it('streams output over server-sent events, then the result', async () => {
    const started = await spine.api.call(runnerId, { name: 'javascript', input: { code: 'for (let i = 0; i < 3; i++) console.log("line " + i); const t = Date.now(); while (Date.now() - t < 1500) {} "end"' } }, '?wait=false');
    expect(started.status).toBe(202);
    const res = await fetch(`${spine.cp.url}/v1/tool-calls/${started.body.id}/events`, { headers: { authorization: `Bearer ${spine.cp.adminToken}` } });
    const text = await res.text();
    expect(text).toContain('event: output');
    expect(text).toMatch(/line 0\\n/);
    expect(text).toMatch(/event: result[\s\S]*"end"/);
  });

  it('still runs: the runner process is alive after every failure above', () => {
    expect(runner.child.exitCode).toBeNull();
  });
});

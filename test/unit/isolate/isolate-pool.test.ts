import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IsolatePool } from '../../../src/sandbox/isolate/isolate-pool.js';

// Real isolated-vm, in the real supervised child process.
describe('IsolatePool', () => {
  let pool: IsolatePool;
  beforeAll(async () => {
    pool = new IsolatePool({ memoryMb: 32, timeoutMs: 2000, watchdogGraceMs: 1000 });
    await pool.warm();
  });
  afterAll(async () => {
    await pool.close();
  });

  it('returns the last expression as text and streams console output', async () => {
    const out: string[] = [];
    const r = await pool.evaluate({ code: 'console.log("hi", {a: 1}); console.error("oops"); [1,2].map(x => x * 2)', onOutput: (s, d) => out.push(`${s}:${d}`) });
    expect(r.outcome).toBe('completed');
    expect(r.value).toBe('[\n  2,\n  4\n]');
    expect(out).toEqual(['stdout:hi {"a":1}\n', 'stderr:oops\n']);
  });

  it('awaits a promise result', async () => {
    const r = await pool.evaluate({ code: 'Promise.resolve(6).then(x => x * 7)' });
    expect(r).toMatchObject({ outcome: 'completed', value: '42' });
  });

  it('ends an endless loop as timed_out and keeps serving', async () => {
    const r = await pool.evaluate({ code: 'while (true) {}', timeoutMs: 300 });
    expect(r.outcome).toBe('timed_out');
    expect(r.error).toContain('300 ms');
    expect((await pool.evaluate({ code: '1 + 1' })).value).toBe('2');
  });

  it('ends a promise that never settles at the deadline', async () => {
    const r = await pool.evaluate({ code: 'new Promise(() => {})', timeoutMs: 300 });
    expect(r.outcome).toBe('timed_out');
  });

  it('ends a memory bomb as a memory failure and keeps serving', async () => {
    const r = await pool.evaluate({ code: 'const a = []; while (true) a.push(new Array(1e6).fill(1));', timeoutMs: 10_000 });
    expect(r.outcome).toBe('memory');
    expect(r.error).toMatch(/out of memory \(limit 32 MB\)/);
    expect((await pool.evaluate({ code: '"still here"' })).value).toBe('still here');
  });

  it('gives the code no process, require or host objects', async () => {
    const r = await pool.evaluate({
      code: '[typeof process, typeof require, typeof globalThis.__log, typeof fetch, typeof setTimeout].join(",")',
    });
    expect(r.value).toBe('undefined,undefined,undefined,undefined,undefined');
  });

  it('reports a thrown error with its message', async () => {
    const r = await pool.evaluate({ code: 'null.x' });
    expect(r.outcome).toBe('threw');
    expect(r.error).toMatch(/^Uncaught TypeError: Cannot read properties of null/);
  });

  it('cancels a running evaluation on abort', async () => {
    const c = new AbortController();
    const p = pool.evaluate({ code: 'while (true) {}', timeoutMs: 10_000, signal: c.signal });
    setTimeout(() => c.abort(), 100);
    expect((await p).outcome).toBe('cancelled');
  });

  it('restarts the host after it is killed, answering the call in flight', async () => {
    const [pid] = pool.hostPids();
    const p = pool.evaluate({ code: 'while (true) {}', timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 100));
    process.kill(pid!, 'SIGKILL');
    const r = await p;
    expect(r.outcome).toBe('threw');
    expect(r.error).toMatch(/isolate host crashed/);
    expect((await pool.evaluate({ code: '"back"' })).value).toBe('back');
    expect(pool.hostPids()[0]).not.toBe(pid);
    expect(pool.restarts).toBeGreaterThanOrEqual(1);
  });
});

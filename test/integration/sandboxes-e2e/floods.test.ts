import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../helpers/processes.js';
import { E2E, rssBytes, text } from './harness.js';

const OUTPUT_CAP = 1024 * 1024;

// Abuse in one call while another keeps running, through the real stack.
describe('floods and bombs', () => {
  let e2e: E2E;
  let healthUrl: string;
  beforeAll(async () => {
    e2e = await E2E.start({ SANDBOX_RUNNER_SANDBOX__LIMITS__OUTPUT_BYTES: String(OUTPUT_CAP) });
    const line = await e2e.runner.waitForOutput(/"url":"http:\/\/127\.0\.0\.1:\d+","msg":"health and metrics endpoints listening"/);
    healthUrl = /"url":"([^"]+)"/.exec(line)![1]!;
  });
  afterAll(() => e2e?.stop());

  it('a fork bomb and an output flood each end with a clear status while another call keeps running and the daemon answers', async () => {
    const sessionId = await e2e.openSession();
    const steady = await e2e.start('bash', { command: 'for i in $(seq 1 40); do echo tick $i; sleep 0.1; done; echo survived' }, { sessionId });
    const bomb = e2e.call('bash', { command: 'bomb() { bomb | bomb & }; bomb; sleep 30' }, { timeoutMs: 60_000 });
    const flood = e2e.call('bash', { command: 'yes flood' }, { timeoutMs: 60_000 });
    const execFlood = e2e.call('exec', { argv: ['head', '-c', '10000000000', '/dev/zero'] }, { timeoutMs: 60_000 });

    // The daemon answers while they run.
    expect((await fetch(`${healthUrl}/healthz`)).status).toBe(200);
    expect((await e2e.call('javascript', { code: '"still here"' })).content).toBe('still here');

    const b = await bomb;
    expect(b.isError).toBe(true);
    expect(text(b.content)).toMatch(/process/i);
    const f = await flood;
    expect(f.isError).toBe(true);
    expect(text(f.content)).toMatch(/output limit/);
    const x = await execFlood;
    expect(x.isError).toBe(true);
    expect(text(x.content)).toMatch(/cut|truncat|output/i);
    console.info(`fork bomb → ${b.status}: ${text(b.content).slice(-160)}\nflood → ${f.status}\nexec flood → ${x.status}: ${text(x.content).slice(-160)}`);

    const s = await e2e.waitEnded(steady, 60_000);
    expect(s.status, text(s.content).slice(-500)).toBe('completed');
    expect(text(s.content)).toMatch(/tick 40\nsurvived$/);
    expect(await e2e.closeSession(sessionId)).toBe(204);
    expect(e2e.runner.child.exitCode).toBeNull();
  });

  it('streams a large output to a slow SSE reader complete up to its cap, with the runner memory bounded', async () => {
    const pid = e2e.runner.child.pid!;
    const dirsBefore = await e2e.sandboxDirs();
    const before = await rssBytes(pid);
    // 64 MB of numbered lines; the call keeps the first OUTPUT_CAP bytes.
    const id = await e2e.start('bash', { command: "seq 1 10000000 | head -c 67108864" }, { timeoutMs: 120_000 });
    const res = await fetch(`${e2e.spine.cp.url}/v1/tool-calls/${id}/events`, { headers: { authorization: `Bearer ${e2e.spine.cp.adminToken}` } });
    const reader = res.body!.getReader();
    let sse = '';
    let peak = before;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      sse += Buffer.from(value).toString();
      peak = Math.max(peak, await rssBytes(pid));
      // A slow reader: each chunk waits for the next turn of the runner's stream.
      await new Promise((r) => setImmediate(r));
    }
    const streamed = [...sse.matchAll(/event: output\ndata: (.*)\n/g)].map((m) => JSON.parse(m[1]!).data as string).join('');
    const result = await e2e.waitEnded(id);
    console.info(`runner RSS before ${(before / 2 ** 20).toFixed(0)} MB, peak while streaming ${(peak / 2 ** 20).toFixed(0)} MB; streamed ${streamed.length} bytes`);
    // The output arrives complete up to the cap: the first OUTPUT_CAP bytes of `seq`, in order.
    const expected = Array.from({ length: 200_000 }, (_, i) => `${i + 1}\n`).join('').slice(0, OUTPUT_CAP);
    expect(streamed.slice(0, OUTPUT_CAP)).toBe(expected);
    expect(text(result.content)).toMatch(/cut|truncat|more bytes|output limit/i);
    // 64 MB went through the sandbox; the runner held only a bounded part of it.
    expect(peak - before).toBeLessThan(48 * 1024 * 1024);
    await waitUntil(async () => ((await e2e.sandboxDirs()).length === dirsBefore.length ? true : undefined), 10_000, 'sandbox removed');
  });
});

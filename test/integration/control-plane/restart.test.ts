import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TestRunner, makeKeys, msgId, pair, pairBody, readEvents, resultFor, startControlPlane, type TestControlPlane } from './test-runner.js';

describe('control plane restart', () => {
  let dir: string | undefined;
  const planes: TestControlPlane[] = [];
  const runners: TestRunner[] = [];
  afterEach(async () => {
    for (const r of runners.splice(0)) await r.close();
    for (const p of planes.splice(0)) await p.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('keeps its state and gets a running call result exactly once after a restart', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cp-restart-'));
    const first = await startControlPlane({}, dir);
    planes.push(first);
    const adminToken = first.cp.adminToken;
    const signingKey = first.cp.signingPublicKey;
    const p = await pair(first.cp, 'survivor', { site: 'lab' });
    const { token: spareToken } = (await (await first.api('/v1/pairing-tokens', { method: 'POST', json: {} })).json()) as { token: string };
    const { runner } = await TestRunner.connect(p);
    runners.push(runner);

    // One call accepted and running, one sent but never accepted.
    await first.api(`/v1/runners/${p.runnerId}/tool-calls?wait=false`, { method: 'POST', json: { id: 'mid_call', name: 'javascript', input: { code: 'slow()' } } });
    await first.api(`/v1/runners/${p.runnerId}/tool-calls?wait=false`, { method: 'POST', json: { id: 'unaccepted', name: 'javascript', input: { code: '2' } } });
    const midCall = await runner.next('tool.call', (m) => m.toolUse.id === 'mid_call');
    await runner.next('tool.call', (m) => m.toolUse.id === 'unaccepted');
    runner.send({ v: 1, id: msgId(), type: 'tool.accepted', callId: 'mid_call' });
    runner.sendRaw('x');
    await runner.next('error');

    await first.cp.stop();
    await runner.closed;
    planes.splice(0);

    // Admin token and signing key are reused, not made anew.
    expect((await readFile(join(dir, 'admin-token'), 'utf8')).trim()).toBe(adminToken);
    const second = await startControlPlane({}, dir);
    planes.push(second);
    expect(second.cp.adminToken).toBe(adminToken);
    expect(second.cp.signingPublicKey).toBe(signingKey);

    const [listed] = (await (await second.api('/v1/runners')).json()) as any[];
    expect(listed).toMatchObject({ id: p.runnerId, name: 'survivor', labels: { site: 'lab' }, connected: false });
    expect(((await (await second.api('/v1/tool-calls/mid_call')).json()) as any).status).toBe('running');

    // The runner comes back (same keys) and its outbox resends the result twice.
    const { runner: back, welcome } = await TestRunner.connect({ ...p, wsUrl: `${second.cp.url.replace('http', 'ws')}/v1/connect` });
    runners.push(back);
    expect(welcome.known).toEqual([]);
    // The unaccepted call is sent again; the accepted one is not.
    expect((await back.next('tool.call')).toolUse.id).toBe('unaccepted');

    const events = await second.api('/v1/tool-calls/mid_call/events');
    back.send(resultFor('mid_call', 'done after restart'));
    back.send(resultFor('mid_call', 'done after restart'));
    expect((await back.next('ack')).ids).toEqual(['mid_call']);
    expect((await back.next('ack')).ids).toEqual(['mid_call']);
    const results: string[] = [];
    for await (const ev of readEvents(events)) if (ev.event === 'result') results.push((ev.data as any).content);
    expect(results).toEqual(['done after restart']);
    const record = (await (await second.api('/v1/tool-calls/mid_call')).json()) as any;
    expect(record).toMatchObject({ status: 'completed', content: 'done after restart', traceId: midCall.traceparent!.split('-')[1] });

    // A pairing token issued before the restart still works once.
    const keys = await makeKeys();
    const body = pairBody(spareToken, keys, 'late');
    const paired = await fetch(`${second.cp.url}/v1/pair`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(paired.status).toBe(201);
    const reused = await fetch(`${second.cp.url}/v1/pair`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(((await reused.json()) as any).error.reason).toBe('used');
  });

  it('stop is idempotent', async () => {
    const t = await startControlPlane();
    await Promise.all([t.cp.stop(), t.cp.stop()]);
    await t.dispose();
  });
});

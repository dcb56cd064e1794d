import { afterEach, describe, expect, it } from 'vitest';
import { TestRunner, msgId, pair, resultFor, startControlPlane, type Paired, type TestControlPlane } from './test-runner.js';

describe('control plane sessions, traces and audit checkpoints', () => {
  let t: TestControlPlane | undefined;
  const runners: TestRunner[] = [];
  afterEach(async () => {
    for (const r of runners.splice(0)) await r.close();
    await t?.dispose();
    t = undefined;
  });

  async function setup(): Promise<{ p: Paired; runner: TestRunner }> {
    t = await startControlPlane();
    const p = await pair(t.cp);
    const { runner } = await TestRunner.connect(p);
    runners.push(runner);
    return { p, runner };
  }

  it('opens a session, runs a call in it, and closes it', async () => {
    const { p, runner } = await setup();
    const opening = t!.api(`/v1/runners/${p.runnerId}/sessions`, { method: 'POST', json: { driver: 'bwrap', limits: { memoryBytes: 1 << 28 } } });
    const open = await runner.next('session.open');
    expect(open).toMatchObject({ driver: 'bwrap', limits: { memoryBytes: 1 << 28 } });
    runner.send({ v: 1, id: msgId(), type: 'session.result', ref: open.id, sessionId: open.sessionId, ok: true });
    const res = await opening;
    expect(res.status).toBe(201);
    const { sessionId } = (await res.json()) as { sessionId: string };
    expect(sessionId).toBe(open.sessionId);

    const calling = t!.api(`/v1/runners/${p.runnerId}/tool-calls`, { method: 'POST', json: { name: 'bash', input: { command: 'pwd' }, sessionId } });
    const call = await runner.next('tool.call');
    expect(call.sessionId).toBe(sessionId);
    runner.send(resultFor(call.toolUse.id, '/workspace'));
    expect(((await (await calling).json()) as any).content).toBe('/workspace');

    const closing = t!.api(`/v1/sessions/${sessionId}`, { method: 'DELETE' });
    const close = await runner.next('session.close');
    expect(close.sessionId).toBe(sessionId);
    runner.send({ v: 1, id: msgId(), type: 'session.result', ref: close.id, sessionId, ok: true });
    expect((await closing).status).toBe(204);
    expect((await t!.api(`/v1/sessions/${sessionId}`, { method: 'DELETE' })).status).toBe(404);
  });

  it('passes the runner\'s refusal of a session through with its code', async () => {
    const { p, runner } = await setup();
    const opening = t!.api(`/v1/runners/${p.runnerId}/sessions`, { method: 'POST', json: { driver: 'docker' } });
    const open = await runner.next('session.open');
    runner.send({
      v: 1,
      id: msgId(),
      type: 'session.result',
      ref: open.id,
      sessionId: open.sessionId,
      ok: false,
      error: { code: 'policy_denied', message: 'policy drivers does not allow docker' },
    });
    const res = await opening;
    expect(res.status).toBe(403);
    expect(((await res.json()) as any).error).toEqual({ code: 'policy_denied', message: 'policy drivers does not allow docker' });
    const bad = await t!.api(`/v1/runners/${p.runnerId}/sessions`, { method: 'POST', json: { driver: 'vm' } });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).error.message).toMatch(/^driver: /);
  });

  it('serves a call\'s trace with the control plane\'s root span and the runner\'s spans under it', async () => {
    const { p, runner } = await setup();
    const calling = t!.api(`/v1/runners/${p.runnerId}/tool-calls`, { method: 'POST', json: { id: 'traced', name: 'javascript', input: { code: '1' } } });
    const call = await runner.next('tool.call');
    const [, traceId, parentSpanId] = call.traceparent!.split('-');
    const now = BigInt(Date.now()) * 1_000_000n;
    const span = {
      traceId: traceId!,
      spanId: 'aaaaaaaaaaaaaaaa',
      parentSpanId: parentSpanId!,
      name: 'execute',
      startTimeUnixNano: now.toString(),
      endTimeUnixNano: (now + 1_000_000n).toString(),
      status: 'ok' as const,
      attributes: { 'tool.name': 'javascript' },
    };
    runner.send({ v: 1, id: msgId(), type: 'span', spans: [span] });
    runner.send({ v: 1, id: msgId(), type: 'span', spans: [span] });
    runner.send(resultFor('traced', '1'));
    const record = (await (await calling).json()) as any;
    expect(record.traceId).toBe(traceId);
    // Round trip so both span messages are stored before reading.
    runner.sendRaw('x');
    await runner.next('error');

    const res = await t!.api(`/v1/traces/${traceId}`);
    expect(res.status).toBe(200);
    const trace = (await res.json()) as { traceId: string; spans: any[] };
    expect(trace.traceId).toBe(traceId);
    const root = trace.spans.find((s) => s.source === 'control-plane');
    expect(root).toMatchObject({ spanId: parentSpanId, name: 'tool_call javascript', status: 'ok' });
    expect(root.parentSpanId).toBeUndefined();
    expect(root.attributes).toMatchObject({ 'tool.call_id': 'traced', 'runner.id': p.runnerId, 'tool.status': 'completed' });
    const runnerSpans = trace.spans.filter((s) => s.source === 'runner');
    expect(runnerSpans).toHaveLength(1);
    expect(runnerSpans[0]).toMatchObject({ spanId: 'aaaaaaaaaaaaaaaa', parentSpanId, runnerId: p.runnerId });

    expect((await t!.api(`/v1/traces/${'0'.repeat(32)}`)).status).toBe(404);
  });

  it('keeps the runner\'s audit checkpoints', async () => {
    const { p, runner } = await setup();
    const cp = { v: 1 as const, type: 'audit.checkpoint' as const, seq: 100, hash: 'ab'.repeat(32), signature: 'c2ln', at: new Date().toISOString() };
    runner.send({ ...cp, id: msgId() });
    runner.send({ ...cp, id: msgId() });
    runner.send({ ...cp, id: msgId(), seq: 200 });
    runner.sendRaw('x');
    await runner.next('error');
    const res = await t!.api(`/v1/runners/${p.runnerId}/audit-checkpoints`);
    const list = (await res.json()) as any[];
    expect(list.map((c) => c.seq)).toEqual([100, 200]);
    expect(list[0]).toMatchObject({ hash: 'ab'.repeat(32), signature: 'c2ln' });
    expect((await t!.api('/v1/runners/rnr_nope/audit-checkpoints')).status).toBe(404);
  });
});

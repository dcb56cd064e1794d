import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { waitUntil } from '../../helpers/processes.js';
import { CALL_LOG_FILE, parseCallLog } from '../../../src/control-plane/call-store.js';
import { encodeOutputFrame } from '../../../src/protocol/index.js';
import { TestRunner, msgId, pair, readEvents, resultFor, startControlPlane, type Paired, type TestControlPlane } from './test-runner.js';

describe('control plane tool calls', () => {
  let t: TestControlPlane | undefined;
  const runners: TestRunner[] = [];
  afterEach(async () => {
    for (const r of runners.splice(0)) await r.close();
    await t?.dispose();
    t = undefined;
  });

  async function setup(options: Parameters<typeof startControlPlane>[0] = {}): Promise<{ p: Paired; runner: TestRunner }> {
    t = await startControlPlane(options);
    const p = await pair(t.cp);
    const { runner } = await TestRunner.connect(p);
    runners.push(runner);
    return { p, runner };
  }

  const post = (runnerId: string, body: unknown, query = '') =>
    t!.api(`/v1/runners/${runnerId}/tool-calls${query}`, { method: 'POST', json: body });

  async function errorOf(res: Response): Promise<{ status: number; code: string; message: string }> {
    const body = (await res.json()) as { error: { code: string; message: string } };
    return { status: res.status, ...body.error };
  }

  describe('refuses bad requests before they reach a runner', () => {
    it('401 without or with a wrong admin token', async () => {
      const { p } = await setup();
      const url = `${t!.cp.url}/v1/runners/${p.runnerId}/tool-calls`;
      const none = await fetch(url, { method: 'POST', body: '{}' });
      expect(await errorOf(none)).toMatchObject({ status: 401, code: 'unauthorized' });
      const wrong = await fetch(url, { method: 'POST', body: '{}', headers: { authorization: 'Bearer nope' } });
      expect(await errorOf(wrong)).toMatchObject({ status: 401, code: 'unauthorized' });
      expect((await fetch(`${t!.cp.url}/v1/runners`)).status).toBe(401);
    });

    it('400 for bad JSON and for a body that fails the schema, naming the field', async () => {
      const { p } = await setup();
      const bad = await t!.api(`/v1/runners/${p.runnerId}/tool-calls`, {
        method: 'POST',
        body: '{"name": "javascript",',
        headers: { 'content-type': 'application/json' },
      });
      expect(await errorOf(bad)).toMatchObject({ status: 400, code: 'bad_json' });
      const noName = await errorOf(await post(p.runnerId, { input: {} }));
      expect(noName).toMatchObject({ status: 400, code: 'invalid_request' });
      expect(noName.message).toMatch(/^name: /);
      const badTimeout = await errorOf(await post(p.runnerId, { name: 'javascript', input: { code: '1' }, timeoutMs: -5 }));
      expect(badTimeout.message).toMatch(/^timeoutMs: /);
      const extra = await errorOf(await post(p.runnerId, { name: 'javascript', input: { code: '1' }, timeout: 5 }));
      expect(extra.message).toMatch(/timeout/);
    });

    it('404 for an unknown runner, 409 for one not connected', async () => {
      const { runner } = await setup();
      expect(await errorOf(await post('rnr_unknown', { name: 'javascript', input: { code: '1' } }))).toMatchObject({
        status: 404,
        code: 'unknown_runner',
      });
      const offline = await pair(t!.cp, 'offline');
      expect(await errorOf(await post(offline.runnerId, { name: 'javascript', input: { code: '1' } }))).toMatchObject({
        status: 409,
        code: 'runner_not_connected',
      });
      expect(runner.pending('tool.call')).toEqual([]);
    });

    it('400 for an unknown tool and for input that fails its schema, and nothing is sent', async () => {
      const { p, runner } = await setup();
      const unknown = await errorOf(await post(p.runnerId, { name: 'rm_rf', input: {} }));
      expect(unknown).toMatchObject({ status: 400, code: 'unknown_tool' });
      expect(unknown.message).toContain('javascript');
      const badInput = await errorOf(await post(p.runnerId, { name: 'javascript', input: { code: 42 } }));
      expect(badInput).toMatchObject({ status: 400, code: 'invalid_input' });
      expect(badInput.message).toMatch(/^input\.code: /);
      const unknownSession = await errorOf(await post(p.runnerId, { name: 'javascript', input: { code: '1' }, sessionId: 'sess_x' }));
      expect(unknownSession).toMatchObject({ status: 404, code: 'unknown_session' });

      // A good call after them is the first and only thing the runner receives.
      await post(p.runnerId, { id: 'good_one', name: 'javascript', input: { code: '1' } }, '?wait=false');
      expect((await runner.next('tool.call')).toolUse.id).toBe('good_one');
      expect(runner.pending('tool.call')).toEqual([]);
    });

    it('404 for an unknown call and an unknown route', async () => {
      await setup();
      expect(await errorOf(await t!.api('/v1/tool-calls/nope'))).toMatchObject({ status: 404, code: 'unknown_call' });
      expect(await errorOf(await t!.api('/v1/nothing'))).toMatchObject({ status: 404, code: 'not_found' });
    });
  });

  it('runs a call end to end, streaming output over SSE, and answers the waiting POST', async () => {
    const { p, runner } = await setup();
    const waiting = post(p.runnerId, { id: 'toolu_e2e', name: 'javascript', input: { code: 'console.log("hi"); 6*7' }, timeoutMs: 5000 });
    const call = await runner.next('tool.call');
    expect(call.toolUse).toEqual({ type: 'tool_use', id: 'toolu_e2e', name: 'javascript', input: { code: 'console.log("hi"); 6*7' } });
    expect(call.timeoutMs).toBe(5000);
    expect(call.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);

    const events = await t!.api('/v1/tool-calls/toolu_e2e/events');
    expect(events.headers.get('content-type')).toBe('text/event-stream');
    runner.send({ v: 1, id: msgId(), type: 'tool.accepted', callId: 'toolu_e2e' });
    runner.send({ v: 1, id: msgId(), type: 'tool.output', callId: 'toolu_e2e', seq: 0, stream: 'stdout', data: 'hi\n' });
    // "é" split across two binary frames comes out whole.
    const e = Buffer.from('é');
    runner.sendRaw(encodeOutputFrame({ callId: 'toolu_e2e', seq: 1, stream: 'stderr', data: Buffer.concat([Buffer.from('warn '), e.subarray(0, 1)]) }));
    runner.sendRaw(encodeOutputFrame({ callId: 'toolu_e2e', seq: 2, stream: 'stderr', data: e.subarray(1) }));
    // A character cut off by plain ASCII reads as U+FFFD, and ASCII's quotes, backslashes and control bytes arrive as sent.
    runner.sendRaw(encodeOutputFrame({ callId: 'toolu_e2e', seq: 3, stream: 'stdout', data: Buffer.concat([Buffer.from('x'), e.subarray(0, 1)]) }));
    runner.sendRaw(encodeOutputFrame({ callId: 'toolu_e2e', seq: 4, stream: 'stdout', data: Buffer.from('a "q" \\ \t\r\n\u0001\u001f end') }));
    runner.send(resultFor('toolu_e2e', '42'));

    const seen: Array<{ event: string; data: any }> = [];
    for await (const ev of readEvents(events)) seen.push(ev);
    expect(seen.map((s) => s.event)).toEqual(['output', 'output', 'output', 'output', 'output', 'result']);
    expect(seen[0]!.data).toEqual({ seq: 0, stream: 'stdout', data: 'hi\n' });
    expect(seen[1]!.data).toEqual({ seq: 1, stream: 'stderr', data: 'warn ' });
    expect(seen[2]!.data).toEqual({ seq: 2, stream: 'stderr', data: 'é' });
    expect(seen[3]!.data).toEqual({ seq: 3, stream: 'stdout', data: 'x' });
    expect(seen[4]!.data).toEqual({ seq: 4, stream: 'stdout', data: '\ufffda "q" \\ \t\r\n\u0001\u001f end' });
    expect(seen[5]!.data).toMatchObject({ id: 'toolu_e2e', status: 'completed', content: '42' });

    const res = await waiting;
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    expect(body).toMatchObject({ id: 'toolu_e2e', runnerId: p.runnerId, name: 'javascript', status: 'completed', content: '42', isError: false, durationMs: 3 });
    expect(body.traceId).toBe(call.traceparent!.split('-')[1]);
    expect((await runner.next('ack')).ids).toEqual(['toolu_e2e']);

    // A client subscribing after the end gets the result at once.
    const late: string[] = [];
    for await (const ev of readEvents(await t!.api('/v1/tool-calls/toolu_e2e/events'))) late.push(ev.event);
    expect(late).toEqual(['result']);
  });

  it('keeps a running call on disk while a client waits, and acknowledges the result only once its end is on disk', async () => {
    const { p, runner } = await setup();
    const waiting = post(p.runnerId, { id: 'toolu_disk', name: 'javascript', input: { code: '1' } });
    await runner.next('tool.call');
    runner.send({ v: 1, id: msgId(), type: 'tool.accepted', callId: 'toolu_disk' });
    const file = join(t!.dataDir, 'calls', CALL_LOG_FILE);
    const onDisk = async () => parseCallLog(await readFile(file, 'utf8')).get('toolu_disk') ?? null;
    // A call that outlives a moment is written as running (a control-plane restart finds it).
    await waitUntil(async () => (await onDisk())?.status === 'running', 10_000, 'the running record on disk');
    runner.send(resultFor('toolu_disk', 'done'));
    expect((await waiting).status).toBe(200);
    // The ack comes after the end is written: the runner may forget the result only then.
    expect((await runner.next('ack')).ids).toEqual(['toolu_disk']);
    expect(await onDisk()).toMatchObject({ status: 'completed', content: 'done' });
  });

  it('lets an SSE client go with a lagged event once it leaves too much unread, and the call goes on', async () => {
    // A 4 MiB limit here (64 MiB by default), so the test sends 48 MiB and not hundreds.
    const { p, runner } = await setup({ sseMaxBufferedBytes: 4 * 1024 * 1024 });
    const res = await post(p.runnerId, { id: 'toolu_slow', name: 'javascript', input: { code: '1' } }, '?wait=false');
    expect(res.status).toBe(202);
    await runner.next('tool.call');
    // A client that subscribes and then reads nothing: its response stays paused.
    const slow = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http.get(`${t!.cp.url}/v1/tool-calls/toolu_slow/events`, { headers: { authorization: `Bearer ${t!.cp.adminToken}` } }, resolve).on('error', reject);
    });
    const chunk = Buffer.alloc(64 * 1024, 'a');
    for (let seq = 0; seq < 48 * 16; seq++) runner.sendRaw(encodeOutputFrame({ callId: 'toolu_slow', seq, stream: 'stdout', data: chunk }));
    runner.send(resultFor('toolu_slow', 'done'));
    // The control plane handles a runner's messages in order: by the ack, every frame went to the client's stream.
    expect((await runner.next('ack')).ids).toEqual(['toolu_slow']);
    expect(((await (await t!.api('/v1/tool-calls/toolu_slow')).json()) as { status: string }).status).toBe('completed');

    let text = '';
    slow.setEncoding('utf8');
    for await (const piece of slow) text += piece;
    const events = text.split('\n\n').filter(Boolean).map((e) => e.split('\n')[0]);
    expect(events.at(-1)).toBe('event: lagged');
    expect(events).not.toContain('event: result');
    // Far less than the 48 MiB sent: the backlog was bounded, not kept.
    expect(text.length).toBeLessThan(24 * 1024 * 1024);
  });

  it('with wait=false answers 202 and the record reads running, then the result', async () => {
    const { p, runner } = await setup();
    const res = await post(p.runnerId, { name: 'javascript', input: { code: '1' } }, '?wait=false');
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    expect(id).toMatch(/^toolu_/);
    const call = await runner.next('tool.call');
    expect(call.toolUse.id).toBe(id);
    const running = (await (await t!.api(`/v1/tool-calls/${id}`)).json()) as any;
    expect(running).toMatchObject({ id, status: 'running', content: null, isError: null });
    runner.send({ ...resultFor(id, 'boom', 'failed') });
    await runner.next('ack');
    const done = (await (await t!.api(`/v1/tool-calls/${id}`)).json()) as any;
    expect(done).toMatchObject({ id, status: 'failed', content: 'boom', isError: true });
  });

  it('cancels a running call with tool.cancel', async () => {
    const { p, runner } = await setup();
    await post(p.runnerId, { id: 'to_cancel', name: 'javascript', input: { code: 'while(true){}' } }, '?wait=false');
    await runner.next('tool.call');
    runner.send({ v: 1, id: msgId(), type: 'tool.accepted', callId: 'to_cancel' });
    const res = await t!.api('/v1/tool-calls/to_cancel/cancel', { method: 'POST' });
    expect(res.status).toBe(202);
    expect((await runner.next('tool.cancel')).callId).toBe('to_cancel');
    runner.send(resultFor('to_cancel', 'cancelled', 'cancelled'));
    await runner.next('ack');
    expect(((await (await t!.api('/v1/tool-calls/to_cancel')).json()) as any).status).toBe('cancelled');
  });

  it('returns the existing record for a repeated id instead of running again', async () => {
    const { p, runner } = await setup();
    await post(p.runnerId, { id: 'once', name: 'javascript', input: { code: '1' } }, '?wait=false');
    await runner.next('tool.call');
    const again = post(p.runnerId, { id: 'once', name: 'javascript', input: { code: '1' } });
    runner.send(resultFor('once', '1'));
    expect(((await (await again).json()) as any)).toMatchObject({ id: 'once', status: 'completed', content: '1' });
    expect(runner.pending('tool.call')).toEqual([]);
    const conflict = await post(p.runnerId, { id: 'once', name: 'bash', input: { command: 'true' } });
    expect(conflict.status).toBe(409);
  });

  it('stores a repeated result once and acknowledges it each time', async () => {
    const { p, runner } = await setup();
    await post(p.runnerId, { id: 'dup', name: 'javascript', input: { code: '1' } }, '?wait=false');
    await runner.next('tool.call');
    const events = await t!.api('/v1/tool-calls/dup/events');
    runner.send(resultFor('dup', 'first'));
    runner.send(resultFor('dup', 'second'));
    expect((await runner.next('ack')).ids).toEqual(['dup']);
    expect((await runner.next('ack')).ids).toEqual(['dup']);
    const results: any[] = [];
    for await (const ev of readEvents(events)) if (ev.event === 'result') results.push(ev.data);
    expect(results).toHaveLength(1);
    expect(results[0].content).toBe('first');
    expect(((await (await t!.api('/v1/tool-calls/dup')).json()) as any).content).toBe('first');
  });

  it('sends an unaccepted call again when the runner reconnects, and not an accepted one', async () => {
    const { p, runner } = await setup();
    await post(p.runnerId, { id: 'lost', name: 'javascript', input: { code: '1' } }, '?wait=false');
    await post(p.runnerId, { id: 'kept', name: 'javascript', input: { code: '2' } }, '?wait=false');
    const first = await runner.next('tool.call', (m) => m.toolUse.id === 'lost');
    await runner.next('tool.call', (m) => m.toolUse.id === 'kept');
    runner.send({ v: 1, id: msgId(), type: 'tool.accepted', callId: 'kept' });
    // Round trip so the accepted message is processed before the socket drops.
    runner.sendRaw('not json');
    await runner.next('error');
    await runner.close();

    const { runner: again, welcome } = await TestRunner.connect(p);
    runners.push(again);
    expect(welcome.known).toEqual([]);
    const resent = await again.next('tool.call');
    expect(resent.toolUse.id).toBe('lost');
    expect(resent.id).not.toBe(first.id);
    again.send(resultFor('lost', 'ok'));
    again.send(resultFor('kept', 'ok'));
    await again.next('ack', (m) => m.ids[0] === 'lost');
    await again.next('ack', (m) => m.ids[0] === 'kept');
    expect(again.pending('tool.call')).toEqual([]);

    // On the next connect the stored results are announced as known.
    await again.close();
    const third = await TestRunner.connect(p);
    runners.push(third.runner);
    expect([...third.welcome.known].sort()).toEqual(['kept', 'lost']);
  });

  it('fails a call the runner refuses with an error', async () => {
    const { p, runner } = await setup();
    const waiting = post(p.runnerId, { id: 'refused', name: 'javascript', input: { code: '1' } });
    const call = await runner.next('tool.call');
    runner.send({ v: 1, id: msgId(), type: 'error', code: 'busy', message: 'the runner is at its limit of concurrent calls', ref: call.id });
    const body = (await (await waiting).json()) as any;
    expect(body).toMatchObject({ status: 'failed', isError: true });
    expect(body.content).toMatch(/busy/);
  });

  it('passes every tool.call and tool.cancel through the signer, afresh on each send', async () => {
    let n = 0;
    t = await startControlPlane({
      signMessage: (msg, target) => {
        expect(target.secretKey).toHaveLength(64);
        n += 1;
        return { ...msg, sig: { ts: n, nonce: `nonce-${String(n).padStart(16, '0')}`, runnerId: target.runnerId, value: 'c2ln' } };
      },
    });
    const p = await pair(t.cp);
    const { runner } = await TestRunner.connect(p);
    runners.push(runner);
    await post(p.runnerId, { id: 'signed', name: 'javascript', input: { code: '1' } }, '?wait=false');
    const first = await runner.next('tool.call');
    expect(first.sig).toMatchObject({ runnerId: p.runnerId, ts: 1 });
    await runner.close();
    const again = await TestRunner.connect(p);
    runners.push(again.runner);
    const resent = await again.runner.next('tool.call');
    expect(resent.sig?.ts).toBe(2);
    await t.api('/v1/tool-calls/signed/cancel', { method: 'POST' });
    expect((await again.runner.next('tool.cancel')).sig?.ts).toBe(3);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { encodeOutputFrame } from '../../../src/protocol/index.js';
import { DEFAULT_CAPABILITIES, TestRunner, msgId, pair, signChallenge, startControlPlane, type TestControlPlane } from './test-runner.js';

describe('control plane runner connection', () => {
  let t: TestControlPlane | undefined;
  const runners: TestRunner[] = [];
  afterEach(async () => {
    for (const r of runners.splice(0)) await r.close();
    await t?.dispose();
    t = undefined;
  });

  it('welcomes a runner that signs the challenge and shows it connected', async () => {
    t = await startControlPlane({ heartbeatMs: 5_000 });
    const p = await pair(t.cp);
    const { runner, welcome } = await TestRunner.connect(p);
    runners.push(runner);
    expect(welcome).toMatchObject({ type: 'welcome', runnerId: p.runnerId, heartbeatMs: 5_000, known: [] });
    const [listed] = (await (await t.api('/v1/runners')).json()) as any[];
    expect(listed.connected).toBe(true);
    expect(listed.capabilities).toEqual(DEFAULT_CAPABILITIES);
    expect(Date.parse(listed.lastSeenAt)).not.toBeNaN();
  });

  it('refuses a bad signature with unauthenticated and closes 4401', async () => {
    t = await startControlPlane();
    const p = await pair(t.cp);
    const other = await pair(t.cp, 'other');
    const runner = await TestRunner.open(p.wsUrl);
    runners.push(runner);
    const hello = await runner.next('hello');
    expect(Buffer.from(hello.challenge, 'base64')).toHaveLength(32);
    runner.send({
      v: 1,
      id: msgId(),
      type: 'auth',
      runnerId: p.runnerId,
      // Signed with another runner's key.
      signature: signChallenge(other.keys.signSecret, p.runnerId, hello.challenge),
      version: '1',
      capabilities: DEFAULT_CAPABILITIES,
    });
    const error = await runner.next('error');
    expect(error.code).toBe('unauthenticated');
    expect((await runner.closed).code).toBe(4401);
    const listed = (await (await t.api('/v1/runners')).json()) as any[];
    expect(listed.every((r) => r.connected === false)).toBe(true);
  });

  it('refuses a runner id it never paired', async () => {
    t = await startControlPlane();
    const p = await pair(t.cp);
    const runner = await TestRunner.open(p.wsUrl);
    runners.push(runner);
    const hello = await runner.next('hello');
    runner.send({
      v: 1,
      id: msgId(),
      type: 'auth',
      runnerId: 'rnr_nobody',
      signature: signChallenge(p.keys.signSecret, 'rnr_nobody', hello.challenge),
      version: '1',
      capabilities: DEFAULT_CAPABILITIES,
    });
    expect((await runner.next('error')).code).toBe('unauthenticated');
    expect((await runner.closed).code).toBe(4401);
  });

  it('answers malformed frames with an error naming the problem and carries on', async () => {
    t = await startControlPlane();
    const p = await pair(t.cp);
    const { runner } = await TestRunner.connect(p);
    runners.push(runner);

    runner.sendRaw('{not json');
    expect(await runner.next('error')).toMatchObject({ code: 'bad_frame' });

    runner.sendRaw(JSON.stringify({ v: 1, id: 'x1', type: 'tool.output', callId: 'c1', seq: 'one', stream: 'stdout', data: '' }));
    const bad = await runner.next('error');
    expect(bad).toMatchObject({ code: 'bad_message', ref: 'x1' });
    expect(bad.message).toMatch(/^seq: /);

    runner.sendRaw(JSON.stringify({ v: 1, id: 'x2', type: 'no.such.type' }));
    expect(await runner.next('error')).toMatchObject({ code: 'bad_message', ref: 'x2' });

    runner.sendRaw(JSON.stringify({ v: 2, id: 'x3', type: 'ack', ids: ['a'] }));
    expect(await runner.next('error')).toMatchObject({ code: 'unsupported_version', ref: 'x3' });

    runner.sendRaw(Buffer.from([0x00, 0x01, 0x02]));
    expect(await runner.next('error')).toMatchObject({ code: 'bad_frame' });

    // Still connected and serving: a call goes through on the same socket.
    const res = await t.api(`/v1/runners/${p.runnerId}/tool-calls?wait=false`, {
      method: 'POST',
      json: { id: 'after_bad_frames', name: 'javascript', input: { code: '1' } },
    });
    expect(res.status).toBe(202);
    const call = await runner.next('tool.call');
    expect(call.toolUse.id).toBe('after_bad_frames');
    runner.sendRaw(encodeOutputFrame({ callId: 'after_bad_frames', seq: 0, stream: 'stdout', data: Buffer.from('ok') }));
    runner.send({ v: 1, id: msgId(), type: 'tool.result', callId: 'after_bad_frames', status: 'completed', result: { type: 'tool_result', tool_use_id: 'after_bad_frames', content: '1', is_error: false }, durationMs: 1 });
    expect((await runner.next('ack')).ids).toEqual(['after_bad_frames']);
  });

  it('lets a newer connection replace the old one', async () => {
    t = await startControlPlane();
    const p = await pair(t.cp);
    const first = await TestRunner.connect(p);
    runners.push(first.runner);
    const second = await TestRunner.connect(p);
    runners.push(second.runner);
    expect((await first.runner.closed).code).toBe(4000);
    const [listed] = (await (await t.api('/v1/runners')).json()) as any[];
    expect(listed.connected).toBe(true);
    // Calls now go to the new socket.
    await t.api(`/v1/runners/${p.runnerId}/tool-calls?wait=false`, { method: 'POST', json: { id: 'to_second', name: 'javascript', input: { code: '1' } } });
    expect((await second.runner.next('tool.call')).toolUse.id).toBe('to_second');
  });

  it('drops a runner that stops answering pings', async () => {
    t = await startControlPlane({ heartbeatMs: 100 });
    const p = await pair(t.cp);
    // A runner that never answers pings (ws answers them itself unless told not to).
    const { runner } = await TestRunner.connect(p, undefined, { autoPong: false });
    runners.push(runner);
    const closed = await runner.closed;
    expect(closed.code).toBe(1006);
    const [listed] = (await (await t.api('/v1/runners')).json()) as any[];
    expect(listed.connected).toBe(false);
  });
});

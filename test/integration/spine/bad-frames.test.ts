import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawControlPlane } from '../../helpers/raw-control-plane.js';
import { runCli, startCli, type RunningProcess } from '../../helpers/processes.js';

// A control plane that misbehaves: the runner answers each bad frame with a
// protocol error naming the problem, and keeps serving on the same connection.
describe('bad input from the control plane', () => {
  let dir: string;
  let cp: RawControlPlane;
  let runner: RunningProcess;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'badframes-'));
    cp = await RawControlPlane.start();
    const paired = await runCli(['pair', '--url', cp.url, '--token', 'whatever', '--state-dir', path.join(dir, 'r')]);
    expect(paired.code).toBe(0);
    runner = startCli(['start', '--state-dir', path.join(dir, 'r')], { SANDBOX_RUNNER_HEALTH__PORT: '0' });
    await cp.waitFor((m) => m.type === 'auth');
    await runner.waitForOutput(/connected to the control plane/);
  });
  afterAll(async () => {
    await runner?.stop();
    await cp?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers invalid JSON with bad_frame', async () => {
    cp.sendRaw('{"v":1,');
    const err = await cp.waitFor((m) => m.type === 'error' && m.code === 'bad_frame');
    expect(err.message).toMatch(/not valid JSON/);
  });

  it('answers a schema violation with bad_message naming the field', async () => {
    cp.sendRaw(JSON.stringify({ v: 1, id: 'bad-1', type: 'tool.call', toolUse: { type: 'tool_use', id: 'x', name: 'javascript', input: 'nope' } }));
    const err = await cp.waitFor((m) => m.type === 'error' && m.ref === 'bad-1');
    expect(err).toMatchObject({ code: 'bad_message' });
    expect(err.message).toMatch(/^toolUse\.input: /);
  });

  it('answers an unknown type and another protocol version', async () => {
    cp.sendRaw(JSON.stringify({ v: 1, id: 'bad-2', type: 'tool.teleport' }));
    cp.sendRaw(JSON.stringify({ v: 9, id: 'bad-3', type: 'tool.call' }));
    expect(await cp.waitFor((m) => m.type === 'error' && m.ref === 'bad-2')).toMatchObject({ code: 'bad_message' });
    expect(await cp.waitFor((m) => m.type === 'error' && m.ref === 'bad-3')).toMatchObject({ code: 'unsupported_version' });
  });

  it('refuses a binary frame from the control plane', async () => {
    cp.sendRaw(Buffer.from([1, 2, 3]));
    expect(await cp.waitFor((m) => m.type === 'error' && m.code === 'bad_frame' && /binary/.test(m.message))).toBeTruthy();
  });

  it('answers a tool input that fails its schema with an is_error result naming the field', async () => {
    await cp.sendSigned({ v: 1, id: 'c1', type: 'tool.call', toolUse: { type: 'tool_use', id: 'toolu_badinput', name: 'javascript', input: { code: 42 } } });
    const r = await cp.waitFor((m) => m.type === 'tool.result' && m.callId === 'toolu_badinput');
    expect(r.status).toBe('failed');
    expect(r.result).toMatchObject({ type: 'tool_result', tool_use_id: 'toolu_badinput', is_error: true });
    expect(r.result.content).toMatch(/^invalid input: input\.code: /);
  });

  it('answers an unknown tool with an is_error result listing the tools it has', async () => {
    await cp.sendSigned({ v: 1, id: 'c2', type: 'tool.call', toolUse: { type: 'tool_use', id: 'toolu_unknown', name: 'rm_rf', input: {} } });
    const r = await cp.waitFor((m) => m.type === 'tool.result' && m.callId === 'toolu_unknown');
    expect(r.result.content).toMatch(/unknown tool "rm_rf"; this runner offers: .*javascript/);
  });

  it('still runs a good call on the same connection after all of that', async () => {
    await cp.sendSigned({ v: 1, id: 'c3', type: 'tool.call', toolUse: { type: 'tool_use', id: 'toolu_good', name: 'javascript', input: { code: '40 + 2' } } });
    const r = await cp.waitFor((m) => m.type === 'tool.result' && m.callId === 'toolu_good');
    expect(r).toMatchObject({ status: 'completed', result: { content: '42', is_error: false } });
    expect(cp.received.filter((m) => m.type === 'auth')).toHaveLength(1);
    expect(runner.child.exitCode).toBeNull();
  });

  it('keeps each result in its outbox until acknowledged, and resends it after a reconnect', async () => {
    // Nothing was acked so far: drop the connection and expect the results again.
    const before = cp.received.filter((m) => m.type === 'tool.result' && m.callId === 'toolu_good').length;
    cp.socket!.terminate();
    await cp.waitFor((m) => m.type === 'auth' && cp.received.filter((x) => x.type === 'auth').length === 2);
    await expect.poll(() => cp.received.filter((m) => m.type === 'tool.result' && m.callId === 'toolu_good').length, { timeout: 20_000 }).toBe(before + 1);
    cp.sendRaw(JSON.stringify({ v: 1, id: 'a1', type: 'ack', ids: ['toolu_good', 'toolu_unknown', 'toolu_badinput'] }));
    // A redelivered call id is answered from the outbox record, not run again.
    await cp.sendSigned({ v: 1, id: 'c4', type: 'tool.call', toolUse: { type: 'tool_use', id: 'toolu_good', name: 'javascript', input: { code: '0' } } });
    await expect.poll(() => cp.received.filter((m) => m.type === 'tool.result' && m.callId === 'toolu_good').length, { timeout: 20_000 }).toBe(before + 2);
    const last = cp.received.filter((m) => m.type === 'tool.result' && m.callId === 'toolu_good').at(-1);
    expect(last.result.content).toBe('42');
  });

  it('tells the control plane it has a call that runs a while before its result, and answers a quick call with its result alone', async () => {
    await cp.sendSigned({ v: 1, id: 'c5', type: 'tool.call', toolUse: { type: 'tool_use', id: 'toolu_slow', name: 'javascript', input: { code: 'const t = Date.now(); while (Date.now() - t < 300); "slow"' } } });
    await cp.sendSigned({ v: 1, id: 'c6', type: 'tool.call', toolUse: { type: 'tool_use', id: 'toolu_quick', name: 'javascript', input: { code: '"quick"' } } });
    await cp.waitFor((m) => m.type === 'tool.result' && m.callId === 'toolu_slow');
    await cp.waitFor((m) => m.type === 'tool.result' && m.callId === 'toolu_quick');
    const order = cp.received.filter((m) => m.callId === 'toolu_slow').map((m) => m.type);
    expect(order).toEqual(['tool.accepted', 'tool.result']);
    // The result says all the acceptance would have: the control plane will not send the call again.
    expect(cp.received.filter((m) => m.callId === 'toolu_quick').map((m) => m.type)).toContain('tool.result');
  });
});

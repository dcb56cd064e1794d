import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sodium from 'libsodium-wrappers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealCredential } from '../../../src/credentials/index.js';
import { signRequest } from '../../../src/signing/index.js';
import { runCli, startCli, type RunningProcess } from '../../helpers/processes.js';
import { RawControlPlane } from '../../helpers/raw-control-plane.js';
import { readAudit } from './security-helpers.js';

const RUNNER_ID = 'rnr_raw';

// Each refused request is sent for real over the WebSocket by a hand-driven
// control plane to a real runner process; the runner answers, audits, logs and carries on.
describe('signed requests: every refusal over a real WebSocket', () => {
  let dir: string;
  let stateDir: string;
  let cp: RawControlPlane;
  let runner: RunningProcess;
  let boxPublicKey: Uint8Array;
  const runners: RunningProcess[] = [];

  const startRunner = async () => {
    const before = cp.received.filter((m) => m.type === 'auth').length;
    const r = startCli(['start', '--state-dir', stateDir], { SANDBOX_RUNNER_HEALTH__PORT: '0' });
    runners.push(r);
    await cp.waitFor(() => cp.received.filter((m) => m.type === 'auth').length > before);
    await r.waitForOutput(/connected to the control plane/);
    return r;
  };
  const newId = (p: string) => `${p}_${randomBytes(6).toString('hex')}`;
  const toolCall = (callId: string, extra: Record<string, unknown> = {}) => ({
    v: 1,
    id: newId('msg'),
    type: 'tool.call',
    toolUse: { type: 'tool_use', id: callId, name: 'javascript', input: { code: '"served " + (6 * 7)' } },
    ...extra,
  });
  // Loosely typed on purpose: the tests take signed messages apart and send hostile variants.
  const sign = (msg: Record<string, unknown>, opts: { runnerId?: string; clock?: () => number } = {}): Promise<any> =>
    signRequest(msg, { secretKey: cp.keys.privateKey, runnerId: opts.runnerId ?? RUNNER_ID, ...(opts.clock ? { clock: opts.clock } : {}) });
  const resultOf = (callId: string) => cp.waitFor((m) => m.type === 'tool.result' && m.callId === callId);
  const errorFor = (msgId: string) => cp.waitFor((m) => m.type === 'error' && m.ref === msgId);

  /** The runner still serves: a correctly signed call runs and gets its result. */
  const stillServes = async () => {
    const callId = newId('toolu_ok');
    await cp.sendSigned(toolCall(callId));
    expect((await resultOf(callId)).result).toMatchObject({ content: 'served 42', is_error: false });
  };

  /** The refusal was answered, audited (also through `audit show`) and logged. */
  const expectRefused = async (msg: { id: string; toolUse: { id: string } }, reason: string, message: RegExp) => {
    const error = await errorFor(msg.id);
    expect(error).toMatchObject({ type: 'error', code: 'signature_invalid' });
    expect(error.message).toMatch(message);
    const audit = await readAudit(stateDir);
    expect(audit.filter((e) => e.type === 'request.refused' && e.callId === msg.toolUse.id)).toEqual([
      expect.objectContaining({ reason, code: 'signature_invalid', messageType: 'tool.call' }),
    ]);
    const shown = await runCli(['audit', 'show', msg.toolUse.id, '--state-dir', stateDir, '--json']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain('request.refused');
    expect(shown.stdout).not.toContain('call.received');
    await runner.waitForOutput(new RegExp(`refused a request[^\\n]*${reason}|${reason}[^\\n]*refused a request`));
    await stillServes();
  };

  beforeAll(async () => {
    await sodium.ready;
    dir = await mkdtemp(path.join(os.tmpdir(), 'refusals-'));
    await chmod(dir, 0o711);
    stateDir = path.join(dir, 'runner');
    cp = await RawControlPlane.start();
    const paired = await runCli(['pair', '--url', cp.url, '--token', 'tok_raw_pairing_000000000000', '--state-dir', stateDir, '--json']);
    expect(paired.code, paired.stderr).toBe(0);
    boxPublicKey = new Uint8Array(Buffer.from(JSON.parse(await readFile(path.join(stateDir, 'identity.json'), 'utf8')).boxPublicKey, 'base64'));
    runner = await startRunner();
  });
  afterAll(async () => {
    await Promise.all(runners.map((r) => r.stop()));
    await cp?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a correctly signed call runs', stillServes);

  it('refuses a bad signature (a field changed after signing)', async () => {
    const signed = await sign(toolCall(newId('toolu_bad')));
    const tampered = { ...signed, toolUse: { ...signed.toolUse, input: { code: '"tampered"' } } };
    cp.sendRaw(JSON.stringify(tampered));
    await expectRefused(tampered, 'bad_signature', /signature/);
  });

  it('refuses a message signed for another runner', async () => {
    const msg = await sign(toolCall(newId('toolu_other')), { runnerId: 'rnr_someone_else' });
    cp.sendRaw(JSON.stringify(msg));
    await expectRefused(msg, 'wrong_runner', /rnr_someone_else/);
  });

  it('refuses a timestamp too far in the past', async () => {
    const msg = await sign(toolCall(newId('toolu_past')), { clock: () => Date.now() - 10 * 60_000 });
    cp.sendRaw(JSON.stringify(msg));
    await expectRefused(msg, 'stale', /clock|window|time/i);
  });

  it('refuses a timestamp too far in the future', async () => {
    const msg = await sign(toolCall(newId('toolu_future')), { clock: () => Date.now() + 10 * 60_000 });
    cp.sendRaw(JSON.stringify(msg));
    await expectRefused(msg, 'stale', /clock|window|time/i);
  });

  it('refuses a message without a signature', async () => {
    const msg = toolCall(newId('toolu_unsigned'));
    cp.sendRaw(JSON.stringify(msg));
    await expectRefused(msg, 'missing', /sign/i);
  });

  it('refuses a replayed nonce, also after the runner restarted', async () => {
    const callId = newId('toolu_once');
    const msg = await sign(toolCall(callId));
    const frame = JSON.stringify(msg);
    cp.sendRaw(frame);
    expect((await resultOf(callId)).result.is_error).toBe(false);

    // Same bytes again: the nonce was seen.
    const replayed = await sign(toolCall(newId('toolu_replay')));
    cp.sendRaw(JSON.stringify(replayed));
    await resultOf(replayed.toolUse.id);
    cp.sendRaw(JSON.stringify(replayed));
    // The first send got a result; an error for this message id can only answer the second.
    expect(await errorFor(replayed.id)).toMatchObject({ code: 'signature_invalid' });
    const audit = await readAudit(stateDir);
    expect(audit.filter((e) => e.type === 'request.refused' && e.callId === replayed.toolUse.id)).toEqual([
      expect.objectContaining({ reason: 'replayed' }),
    ]);

    // A restart does not forget: the nonce record is on disk.
    await runner.stop();
    runner = await startRunner();
    cp.sendRaw(frame);
    const error = await errorFor(msg.id);
    expect(error).toMatchObject({ code: 'signature_invalid' });
    expect((await readAudit(stateDir)).filter((e) => e.type === 'request.refused' && e.callId === callId)).toEqual([
      expect.objectContaining({ reason: 'replayed' }),
    ]);
    await runner.waitForOutput(/refused a request[^\n]*replayed|replayed[^\n]*refused a request/);
    await stillServes();
  });

  it('refuses a signed cancel for another runner', async () => {
    const msg = await sign({ v: 1, id: newId('msg'), type: 'tool.cancel', callId: 'toolu_whatever' }, { runnerId: 'rnr_someone_else' });
    cp.sendRaw(JSON.stringify(msg));
    expect(await errorFor(msg.id)).toMatchObject({ code: 'signature_invalid' });
    await stillServes();
  });

  describe('sealed credentials fail the call closed', () => {
    const sealFor = (opts: { callId?: string; sessionId?: string; expiresAt?: number; name?: string; value?: string }) =>
      sealCredential({
        name: opts.name ?? 'TOKEN',
        value: opts.value ?? 'sealed-secret-R7n2Kq',
        boundTo: opts.sessionId ? { sessionId: opts.sessionId } : { callId: opts.callId! },
        expiresAt: opts.expiresAt ?? Date.now() + 60_000,
        runnerBoxPublicKey: boxPublicKey,
      });
    /** An exec call that would print "ran" with the value: it must never run. */
    const credCall = async (callId: string, sealed: string) => {
      const msg = await sign(
        toolCall(callId, {
          toolUse: { type: 'tool_use', id: callId, name: 'exec', input: { argv: ['sh', '-c', 'echo "ran $TOKEN"'] } },
          credentials: [{ name: 'TOKEN', sealed, inject: { env: 'TOKEN' } }],
        }),
      );
      cp.sendRaw(JSON.stringify(msg));
      const result = await resultOf(callId);
      expect(result).toMatchObject({ status: 'failed', result: { is_error: true } });
      expect(result.result.content).not.toMatch(/ran/);
      expect(JSON.stringify(result)).not.toContain('sealed-secret-R7n2Kq');
      return result.result.content as string;
    };

    it('a well-sealed credential reaches the sandbox (the baseline)', async () => {
      const callId = newId('toolu_good');
      const msg = await sign(
        toolCall(callId, {
          toolUse: { type: 'tool_use', id: callId, name: 'exec', input: { argv: ['sh', '-c', 'test "$TOKEN" = sealed-secret-R7n2Kq && echo matched'] } },
          credentials: [{ name: 'TOKEN', sealed: await sealFor({ callId }), inject: { env: 'TOKEN' } }],
        }),
      );
      cp.sendRaw(JSON.stringify(msg));
      const result = await resultOf(callId);
      expect(result.result.is_error).toBe(false);
      expect(JSON.stringify(result.result.content)).toContain('matched');
    });

    it('tampered', async () => {
      const callId = newId('toolu_tamper');
      const box = Buffer.from(await sealFor({ callId }), 'base64');
      box[box.length - 5]! ^= 0x01;
      expect(await credCall(callId, box.toString('base64'))).toMatch(/credential "TOKEN" cannot be opened with this runner's key: it was tampered with/);
    });

    it('truncated', async () => {
      const callId = newId('toolu_trunc');
      const box = Buffer.from(await sealFor({ callId }), 'base64');
      expect(await credCall(callId, box.subarray(0, box.length - 8).toString('base64'))).toMatch(/cannot be opened/);
    });

    it('expired', async () => {
      const callId = newId('toolu_expired');
      expect(await credCall(callId, await sealFor({ callId, expiresAt: Date.now() - 1000 }))).toMatch(/credential "TOKEN" expired at .*send the call again/);
    });

    it('bound to another call', async () => {
      const callId = newId('toolu_misbound');
      expect(await credCall(callId, await sealFor({ callId: 'toolu_another_call' }))).toMatch(
        new RegExp(`is bound to call toolu_another_call, not to call ${callId}`),
      );
    });

    it('bound to a session, used by a call', async () => {
      const callId = newId('toolu_sessbound');
      expect(await credCall(callId, await sealFor({ sessionId: 'sess_abc' }))).toMatch(/is bound to session sess_abc, not to call/);
    });

    it('a session.open with a credential bound to another session is refused', async () => {
      const sessionId = newId('sess');
      const msg = await sign({
        v: 1,
        id: newId('msg'),
        type: 'session.open',
        sessionId,
        credentials: [{ name: 'TOKEN', sealed: await sealFor({ sessionId: 'sess_other' }), inject: { env: 'TOKEN' } }],
      });
      cp.sendRaw(JSON.stringify(msg));
      const reply = await cp.waitFor((m) => m.type === 'session.result' && m.ref === msg.id);
      expect(reply).toMatchObject({ ok: false, error: { code: 'credential_invalid' } });
      expect(reply.error.message).toMatch(new RegExp(`bound to session sess_other, not to session ${sessionId}`));
      // Nothing was opened: a call in that session finds no session.
      const callId = newId('toolu_insess');
      await cp.sendSigned(toolCall(callId, { sessionId }));
      expect((await resultOf(callId)).result.content).toMatch(/no open session/);
    });
  });

  it('refuses a call in a session that brings a network allowlist of its own (the session decides), and keeps serving', async () => {
    const sessionId = newId('sess');
    const open = await sign({ v: 1, id: newId('msg'), type: 'session.open', sessionId });
    cp.sendRaw(JSON.stringify(open));
    expect(await cp.waitFor((m) => m.type === 'session.result' && m.ref === open.id)).toMatchObject({ ok: true });
    const callId = newId('toolu_net');
    await cp.sendSigned(toolCall(callId, { sessionId, network: { allow: ['example.com'] } }));
    const result = await resultOf(callId);
    expect(result.result).toMatchObject({ is_error: true, content: expect.stringMatching(/^network: a call in a session reaches what the session was opened with/) });
    await stillServes();
  });
});

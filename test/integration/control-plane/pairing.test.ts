import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeKeys, pairBody, startControlPlane, type TestControlPlane } from './test-runner.js';

describe('control plane pairing', () => {
  let t: TestControlPlane | undefined;
  afterEach(async () => {
    await t?.dispose();
    t = undefined;
  });

  async function newToken(body: unknown = {}): Promise<{ token: string; expiresAt: string }> {
    const res = await t!.api('/v1/pairing-tokens', { method: 'POST', json: body });
    expect(res.status).toBe(201);
    return (await res.json()) as { token: string; expiresAt: string };
  }

  async function redeem(token: string, name = 'r1') {
    const keys = await makeKeys();
    const res = await fetch(`${t!.cp.url}/v1/pair`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(pairBody(token, keys, name, { zone: 'a' })),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  }

  it('pairs a runner once with a fresh token and lists it', async () => {
    t = await startControlPlane();
    const { token, expiresAt } = await newToken({ labels: { team: 'infra' } });
    expect(Date.parse(expiresAt) - Date.now()).toBeGreaterThan(14 * 60_000);
    const { status, body } = await redeem(token);
    expect(status).toBe(201);
    expect(body.runnerId).toMatch(/^rnr_/);
    expect(body.wsUrl).toBe(`${t.cp.url.replace('http', 'ws')}/v1/connect`);
    expect(body.controlPlaneSigningKey).toBe(t.cp.signingPublicKey);
    expect(Buffer.from(body.controlPlaneSigningKey, 'base64')).toHaveLength(32);

    const runners = (await (await t.api('/v1/runners')).json()) as any[];
    expect(runners).toEqual([
      {
        id: body.runnerId,
        name: 'r1',
        labels: { zone: 'a', team: 'infra' },
        connected: false,
        lastSeenAt: null,
        version: '0.1.0-test',
        capabilities: null,
      },
    ]);
  });

  it('refuses a reused token, saying it was used', async () => {
    t = await startControlPlane();
    const { token } = await newToken();
    expect((await redeem(token)).status).toBe(201);
    const again = await redeem(token, 'r2');
    expect(again.status).toBe(401);
    expect(again.body.error.code).toBe('pairing_token_invalid');
    expect(again.body.error.reason).toBe('used');
    expect(again.body.error.message).toMatch(/already used/);
    expect(JSON.stringify(again.body)).not.toContain(token);
  });

  it('refuses an expired token, saying it expired', async () => {
    let now = Date.now();
    t = await startControlPlane({ clock: () => now, pairingTokenTtlMs: 60_000 });
    const { token, expiresAt } = await newToken();
    expect(Date.parse(expiresAt)).toBe(now + 60_000);
    now += 60_001;
    const res = await redeem(token);
    expect(res.status).toBe(401);
    expect(res.body.error).toMatchObject({ code: 'pairing_token_invalid', reason: 'expired' });
  });

  it('refuses an unknown token', async () => {
    t = await startControlPlane();
    const res = await redeem('srp_not-a-token-we-issued');
    expect(res.status).toBe(401);
    expect(res.body.error).toMatchObject({ code: 'pairing_token_invalid', reason: 'unknown' });
  });

  it('names the field of a bad pairing body', async () => {
    t = await startControlPlane();
    const { token } = await newToken();
    const keys = await makeKeys();
    const res = await fetch(`${t.cp.url}/v1/pair`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...pairBody(token, keys), boxPublicKey: 'abc' }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as any;
    expect(body.error.code).toBe('invalid_request');
    expect(body.error.message).toMatch(/^boxPublicKey: /);
    // The token was not spent by the refused request.
    expect((await redeem(token)).status).toBe(201);
  });

  it('needs the admin token to issue pairing tokens', async () => {
    t = await startControlPlane();
    const res = await fetch(`${t.cp.url}/v1/pairing-tokens`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(401);
    expect(((await res.json()) as any).error.code).toBe('unauthorized');
  });

  it('keeps its data dir 0700 and its secrets 0600', async () => {
    t = await startControlPlane();
    expect((await stat(t.dataDir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(t.dataDir, 'admin-token'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(t.dataDir, 'signing-key.json'))).mode & 0o777).toBe(0o600);
    expect(t.cp.adminTokenPath).toBe(join(t.dataDir, 'admin-token'));
  });
});

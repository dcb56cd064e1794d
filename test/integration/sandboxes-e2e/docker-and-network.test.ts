import { createServer, type Server } from 'node:http';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { E2E } from './harness.js';

// Through the control plane's HTTP API and a real runner process: a docker
// session, and network allowlists (none by default; loopback only when local
// policy allows it, through the runner's egress proxy).
describe('docker sessions and network allowlists through the API', () => {
  let e2e: E2E;
  let server: Server;
  let port: number;

  beforeAll(async () => {
    server = createServer((_req, res) => res.end('hello from the host loopback'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
    e2e = await E2E.start();
  });
  afterAll(async () => {
    await e2e?.stop();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('runs bash in a docker session: state carries over, as the unprivileged user, without network', async () => {
    const sessionId = await e2e.openSession({ driver: 'docker' });
    const first = await e2e.call('bash', { command: 'cd /tmp && export GREETING=hi && id -u' }, { sessionId });
    // The runner is root here: the sandbox's own host uid, above every account's.
    expect(first).toMatchObject({ status: 'completed', content: expect.stringMatching(/^\d+$/) });
    expect(Number(first.content)).toBeGreaterThan(65535);
    const second = await e2e.call('bash', { command: 'echo "$GREETING from $(pwd)"; cat /proc/net/dev | grep -c ":"' }, { sessionId });
    // Only the loopback interface exists inside (--network none).
    expect(second.content).toBe('hi from /tmp\n1');
    expect(await e2e.closeSession(sessionId)).toBe(204);
  });

  it('refuses a session asking for network that local policy does not allow, naming the rule', async () => {
    const r = await e2e.spine.api.request('POST', `/v1/runners/${e2e.runnerId}/sessions`, { network: { allow: ['127.0.0.1'] } });
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe('policy_denied');
    expect(r.body.error.message).toMatch(/network/);
  });

  it('with policy allowing loopback, reaches an allowed host only through the egress proxy', async () => {
    const configFile = path.join(e2e.spine.dir, 'network-policy.yaml');
    await writeFile(configFile, 'policy:\n  network:\n    allow: ["127.0.0.1"]\n    allowLoopback: true\n');
    const other = await E2E.start({ SANDBOX_RUNNER_CONFIG: configFile });
    try {
      const sessionId = await other.openSession({ network: { allow: ['127.0.0.1'] } });
      const ok = await other.call('bash', { command: `curl -sS --max-time 10 http://127.0.0.1:${port}/` }, { sessionId });
      expect(ok).toMatchObject({ status: 'completed', content: 'hello from the host loopback' });
      // The same server under a name off the allowlist is refused by the proxy.
      const denied = await other.call('bash', { command: `curl -sS --max-time 10 http://localhost:${port}/; echo " http=$?"` }, { sessionId });
      expect(denied.content).not.toContain('hello from the host loopback');
      // And with the proxy bypassed there is no network at all.
      const direct = await other.call('bash', { command: `curl -sS --noproxy '*' --max-time 5 http://127.0.0.1:${port}/ 2>&1; echo " exit=$?"` }, { sessionId });
      expect(direct.content).not.toContain('hello from the host loopback');
      expect(direct.content).toMatch(/exit=7/);
      expect(await other.closeSession(sessionId)).toBe(204);

      // A call without a session carries its own allowlist: its fresh sandbox reaches the host through the proxy.
      const fresh = await other.call('bash', { command: `curl -sS --max-time 10 http://127.0.0.1:${port}/` }, { network: { allow: ['127.0.0.1'] } });
      expect(fresh).toMatchObject({ status: 'completed', content: 'hello from the host loopback' });
      // The next fresh call without one has no network again.
      const none = await other.call('bash', { command: `curl -sS --max-time 5 http://127.0.0.1:${port}/ 2>&1; echo " exit=$?"` });
      expect(none.content).not.toContain('hello from the host loopback');
      // A call's allowlist is checked against local policy as a session's is.
      const refused = await other.call('bash', { command: 'true' }, { network: { allow: ['example.com'] } });
      expect(refused).toMatchObject({ status: 'failed', isError: true, content: expect.stringMatching(/^policy_denied: .*network/) });
      // In a session the session's network applies: a call may not bring another one.
      const inSession = await other.openSession();
      const mixed = await other.spine.api.call(other.runnerId, { name: 'bash', input: { command: 'true' }, sessionId: inSession, network: { allow: ['127.0.0.1'] } });
      expect(mixed.status).toBe(400);
      expect(mixed.body.error.message).toMatch(/^network: a call in a session reaches what the session was opened with/);
      expect(await other.closeSession(inSession)).toBe(204);
    } finally {
      await other.stop();
    }
  });
});

import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlane } from '../../../src/control-plane/index.js';
import { ApiClient } from '../../helpers/control-plane-api.js';
import { closedPort, runCli } from '../../helpers/processes.js';

describe('sandbox-runner pair', () => {
  let dir: string;
  let cp: ControlPlane;
  let api: ApiClient;
  let now = Date.now();

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'pair-'));
    cp = ControlPlane.create({ listen: { host: '127.0.0.1', port: 0 }, dataDir: path.join(dir, 'cp'), clock: () => now });
    await cp.start();
    api = new ApiClient(cp.url, cp.adminToken);
  });
  afterAll(async () => {
    await cp.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('pairs with a one-time token and stores the identity privately', async () => {
    const token = await api.pairingToken();
    const stateDir = path.join(dir, 'runner-ok');
    const r = await runCli(['pair', '--url', cp.url, '--token', token, '--state-dir', stateDir, '--name', 'r1', '--label', 'zone=a', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const { runnerId } = JSON.parse(r.stdout);
    expect((await stat(stateDir)).mode & 0o777).toBe(0o700);
    for (const f of await readdir(stateDir)) {
      const st = await stat(path.join(stateDir, f));
      expect(st.mode & 0o777, f).toBe(st.isDirectory() ? 0o700 : 0o600);
    }
    // The audit log begins with the pairing.
    const audit = await runCli(['audit', 'tail', '-n', '5', '--state-dir', stateDir]);
    expect(audit.stdout).toMatch(/#1 +runner\.paired /);
    const runners = await api.runners();
    expect(runners.find((x) => x.id === runnerId)).toMatchObject({ name: 'r1', labels: { zone: 'a' }, connected: false });
    // The token works once.
    const again = await runCli(['pair', '--url', cp.url, '--token', token, '--state-dir', path.join(dir, 'runner-reuse')]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/pairing refused \(HTTP 401\).*used/);
    await expect(stat(path.join(dir, 'runner-reuse'))).rejects.toThrow();
  });

  it('refuses an expired token and writes nothing', async () => {
    const token = await api.pairingToken(60);
    now += 61_000;
    const stateDir = path.join(dir, 'runner-expired');
    const r = await runCli(['pair', '--url', cp.url, '--token', token, '--state-dir', stateDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/expired/);
    await expect(stat(stateDir)).rejects.toThrow();
  });

  it('refuses an unknown token', async () => {
    const r = await runCli(['pair', '--url', cp.url, '--token', 'not-a-token', '--state-dir', path.join(dir, 'runner-unknown')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/pairing refused \(HTTP 401\)/);
  });

  it('says when the control plane cannot be reached', async () => {
    const port = await closedPort();
    const r = await runCli(['pair', '--url', `http://127.0.0.1:${port}`, '--token', 'x', '--state-dir', path.join(dir, 'runner-unreachable')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot reach the control plane at http://127.0.0.1:${port} (ECONNREFUSED)`);
    await expect(stat(path.join(dir, 'runner-unreachable'))).rejects.toThrow();
  });

  it('refuses plain http to anything but loopback (usage error, exit 2)', async () => {
    const r = await runCli(['pair', '--url', 'http://cp.example.com', '--token', 'x', '--state-dir', path.join(dir, 'runner-plain')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/not encrypted; use https:\/\//);
  });
});

import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ControlPlane } from '../../src/control-plane/index.js';
import { ApiClient } from './control-plane-api.js';
import { runCli, startCli, waitUntil, type RunningProcess } from './processes.js';

/** A real control plane (in this process) and real runner processes paired to it. */
export class Spine {
  cp!: ControlPlane;
  api!: ApiClient;
  readonly runners: RunningProcess[] = [];

  private constructor(readonly dir: string) {}

  static async start(): Promise<Spine> {
    const s = new Spine(await mkdtemp(path.join(os.tmpdir(), 'spine-')));
    s.cp = ControlPlane.create({ listen: { host: '127.0.0.1', port: 0 }, dataDir: path.join(s.dir, 'cp') });
    await s.cp.start();
    s.api = new ApiClient(s.cp.url, s.cp.adminToken);
    return s;
  }

  /** Pairs a new runner state dir through the CLI; returns its id and dir. */
  async pair(name = 'runner'): Promise<{ runnerId: string; stateDir: string }> {
    const stateDir = path.join(this.dir, name);
    const token = await this.api.pairingToken();
    const r = await runCli(['pair', '--url', this.cp.url, '--token', token, '--state-dir', stateDir, '--name', name, '--json']);
    if (r.code !== 0) throw new Error(`pair failed: ${r.stderr}`);
    return { runnerId: JSON.parse(r.stdout).runnerId, stateDir };
  }

  /** Starts `sandbox-runner start` for a paired state dir and waits until it is connected. */
  async startRunner(runnerId: string, stateDir: string, env: Record<string, string> = {}): Promise<RunningProcess> {
    const p = startCli(['start', '--state-dir', stateDir], {
      SANDBOX_RUNNER_HEALTH__PORT: '0',
      SANDBOX_RUNNER_CONTROL_PLANE__RECONNECT_MAX_MS: '1000',
      SANDBOX_RUNNER_CONTROL_PLANE__RECONNECT_INITIAL_MS: '100',
      ...env,
    });
    this.runners.push(p);
    await this.waitConnected(runnerId, true);
    // The control plane lists the runner a moment before the runner has read its welcome.
    await p.waitForOutput(/connected to the control plane/);
    return p;
  }

  waitConnected(runnerId: string, connected = true, timeoutMs = 20_000): Promise<true> {
    return waitUntil(
      async () => ((await this.api.runners()).some((r) => r.id === runnerId && r.connected === connected) ? true : undefined),
      timeoutMs,
      `runner ${runnerId} connected=${connected}`,
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.runners.map((r) => r.stop()));
    await this.cp.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { FakeAnthropic } from '../../fakes/anthropic/fake-anthropic.js';
import { runCli, startCli, type RunningProcess } from '../../helpers/processes.js';

/** What a test may add to the runner's config file. */
export interface DaemonConfigExtra {
  policy?: Record<string, unknown>;
  controlPlane?: Record<string, unknown>;
  managedAgents?: Record<string, unknown>;
  stateDir?: string;
}

/**
 * A fake of Anthropic's side (in this process) and a real `sandbox-runner
 * start --config FILE` child process serving it as a Managed Agents worker,
 * all under one temporary root (config, key file, state dir, workspaces).
 */
export class DaemonHarness {
  runner: RunningProcess | undefined;
  /** Where the daemon's /healthz, /metrics and /status listen. */
  healthUrl = '';

  private constructor(
    readonly root: string,
    readonly fake: FakeAnthropic,
    readonly configFile: string,
    readonly stateDir: string,
  ) {}

  /** Starts the fake and writes the key file (0600) and the config; the runner is not started yet. */
  static async create(extra: DaemonConfigExtra = {}, options: { keyFileContent?: string } = {}): Promise<DaemonHarness> {
    const root = await mkdtemp(path.join(os.tmpdir(), 'sr-ma-daemon-'));
    // Sandbox workspaces live beside the state dir and must be reachable by the sandbox's user.
    await chmod(root, 0o711);
    const fake = new FakeAnthropic();
    await fake.start();
    const keyFile = path.join(root, 'environment.key');
    await writeFile(keyFile, `${options.keyFileContent ?? fake.environmentKey}\n`);
    await chmod(keyFile, 0o600);
    const stateDir = extra.stateDir ?? path.join(root, 'state');
    const config = {
      stateDir,
      logLevel: 'debug',
      controlPlane: { enabled: false, ...extra.controlPlane },
      health: { port: 0 },
      sandbox: { workDir: path.join(root, 'work') },
      managedAgents: { environmentId: fake.environmentId, environmentKeyFile: 'environment.key', baseUrl: fake.url, maxIdleMs: 300, ...extra.managedAgents },
      ...(extra.policy ? { policy: extra.policy } : {}),
    };
    const configFile = path.join(root, 'runner.yaml');
    await writeFile(configFile, stringify(config));
    return new DaemonHarness(root, fake, configFile, stateDir);
  }

  /** The key file's path, for doctor. */
  get keyFile(): string {
    return path.join(this.root, 'environment.key');
  }

  /** `sandbox-runner start --config FILE`; resolves once it polls the queue and its health server listens. */
  async start(env: Record<string, string> = {}): Promise<RunningProcess> {
    this.runner = startCli(['start', '--config', this.configFile], env);
    const line = await this.runner.waitForOutput(/"address":"[^"]+"[^\n]*health and metrics endpoints listening/);
    this.healthUrl = `http://${/"address":"([^"]+)"/.exec(line)![1]!}`;
    await this.runner.waitForOutput(/serving the Managed Agents environment/);
    return this.runner;
  }

  /** Runs another CLI command against the same config. */
  cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return runCli(args);
  }

  /** Every byte the runner wrote to disk under the root (the key file itself left out), with its path. */
  async writtenFiles(): Promise<Array<{ file: string; bytes: Buffer }>> {
    const out: Array<{ file: string; bytes: Buffer }> = [];
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) await walk(p);
        else if (e.isFile() && p !== this.keyFile && p !== this.configFile) out.push({ file: p, bytes: await readFile(p) });
      }
    };
    await walk(this.root);
    if (!this.stateDir.startsWith(this.root)) await walk(this.stateDir);
    return out;
  }

  /** The audit entries (parsed JSONL) in `<stateDir>/audit`. */
  async auditEntries(): Promise<Array<Record<string, unknown>>> {
    const dir = path.join(this.stateDir, 'audit');
    const entries: Array<Record<string, unknown>> = [];
    for (const f of (await readdir(dir)).filter((n) => n.endsWith('.jsonl')).sort()) {
      for (const line of (await readFile(path.join(dir, f), 'utf8')).split('\n')) if (line.trim()) entries.push(JSON.parse(line));
    }
    return entries;
  }

  async close(): Promise<void> {
    await this.runner?.stop();
    await this.fake.close();
    await rm(this.root, { recursive: true, force: true });
  }
}

/** Polls the fake's state until `cond` holds (no timing assertion: vitest's test timeout bounds it). */
export async function until(cond: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await cond())) await new Promise((r) => setTimeout(r, 25));
}

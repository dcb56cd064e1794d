import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ControlPlane } from '../src/control-plane/index.js';
import { PACKAGE_ROOT } from '../src/util/package-info.js';

const CLI = path.join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js');

/** A runner child process started with `sandbox-runner start`. */
export interface BenchRunner {
  id: string;
  child: ChildProcess;
}

/**
 * The whole stack as a user runs it: the reference control plane in this
 * process (its HTTP API and WebSocket on loopback) and real runner processes
 * paired to it through the CLI.
 */
export class BenchStack {
  readonly runners: BenchRunner[] = [];
  readonly #agent = new http.Agent({ keepAlive: true });
  private constructor(
    readonly dir: string,
    readonly cp: ControlPlane,
  ) {}

  static async start(): Promise<BenchStack> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sr-bench-'));
    // bwrap sandboxes run as their own host uid and must pass through to their workspace.
    await chmod(dir, 0o711);
    const cp = ControlPlane.create({ listen: { host: '127.0.0.1', port: 0 }, dataDir: path.join(dir, 'cp') });
    await cp.start();
    return new BenchStack(dir, cp);
  }

  /**
   * Calls the control plane's HTTP API as a client would: node:http over a
   * kept-alive connection (what an SDK's HTTP client does; the global fetch
   * adds about a millisecond per request here).
   */
  request(method: string, p: string, body?: unknown): Promise<{ status: number; body: any }> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = http.request(
        `${this.cp.url}${p}`,
        {
          method,
          agent: this.#agent,
          headers: {
            authorization: `Bearer ${this.cp.adminToken}`,
            ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Pairs a runner through the CLI and starts it; resolves once it has finished its handshake. */
  async runner(name: string, env: Record<string, string> = {}): Promise<BenchRunner> {
    const stateDir = path.join(this.dir, name);
    const token = (await this.request('POST', '/v1/pairing-tokens', {})).body.token as string;
    const pair = spawn(process.execPath, [CLI, 'pair', '--url', this.cp.url, '--token', token, '--state-dir', stateDir, '--name', name, '--json'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    pair.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const [code] = (await once(pair, 'exit')) as [number | null];
    if (code !== 0) throw new Error(`pairing ${name} failed (exit ${code})`);
    const id = JSON.parse(out).runnerId as string;
    // BENCH_RUNNER_NODE_ARGS adds node flags to the runner processes (for example --cpu-prof to profile them).
    const nodeArgs = (process.env.BENCH_RUNNER_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const child = spawn(process.execPath, ['--no-node-snapshot', ...nodeArgs, CLI, 'start', '--state-dir', stateDir], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', SANDBOX_RUNNER_HEALTH__PORT: '0', SANDBOX_RUNNER_LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const runner = { id, child };
    this.runners.push(runner);
    // The runner logs this after its handshake; a request sent before it may be lost.
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      const onData = (d: Buffer) => {
        buf += d.toString();
        if (buf.includes('connected to the control plane')) {
          child.stdout!.off('data', onData);
          child.stdout!.resume();
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.once('exit', (c) => reject(new Error(`runner ${name} exited (${c}) before connecting:\n${buf}`)));
    });
    return runner;
  }

  /** Runs one tool call to its end through the HTTP API (wait=true); throws unless it completed. */
  async call(runnerId: string, name: string, input: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<any> {
    const r = await this.request('POST', `/v1/runners/${runnerId}/tool-calls`, { name, input, ...extra });
    if (r.status !== 200 || r.body.status !== 'completed') throw new Error(`${name} call: HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 400)}`);
    return r.body;
  }

  async stop(): Promise<void> {
    for (const r of this.runners) {
      if (r.child.exitCode === null && r.child.signalCode === null) {
        r.child.kill('SIGTERM');
        await once(r.child, 'exit');
      }
    }
    this.#agent.destroy();
    await this.cp.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

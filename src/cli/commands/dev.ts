import type { Command } from 'commander';
import { chmod, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { ControlPlane } from '../../control-plane/index.js';
import { loadConfig } from '../../config/load-config.js';
import { createLogRedaction, Redactor } from '../../credentials/index.js';
import { Daemon } from '../../daemon/daemon.js';
import { installSignalHandlers } from '../../daemon/signals.js';
import { isPaired, loadIdentity } from '../../identity/identity.js';
import { pair } from '../../identity/pairing.js';
import { describeError, RunnerError } from '../../util/errors.js';
import { createLogger, type Logger } from '../../util/logger.js';
import { out } from '../cli-context.js';

/**
 * `npm start`: a control plane on 127.0.0.1 and a runner paired to it, both in
 * this process, with their state under ./.dev; runs a first call to show it works.
 */
export function registerDevCommand(program: Command): void {
  program
    .command('dev')
    .description('run a local control plane and a runner paired to it (the quick start)')
    .option('--dir <dir>', 'state of both under this directory', '.dev')
    .option('--port <port>', 'control plane port on 127.0.0.1', '7070')
    .option('--log-level <level>', 'log level', 'info')
    .action(async (opts: { dir: string; port: string; logLevel: string }) => {
      const dir = path.resolve(opts.dir);
      // 0711: sandboxes (other uids) must reach .dev/runner-work; the state dirs inside stay 0700.
      await mkdir(dir, { recursive: true, mode: 0o711 });
      await chmod(dir, 0o711);
      // As in `start`: every log line is masked with the secrets of the calls running.
      const redactor = new Redactor();
      const logger = createLogger({ level: opts.logLevel, redact: createLogRedaction(redactor) });
      const makeCp = (port: number) =>
        ControlPlane.create({
          listen: { host: '127.0.0.1', port },
          dataDir: path.join(dir, 'control-plane'),
          logger: logger.child({ part: 'control-plane' }),
        });
      let cp = makeCp(Number(opts.port));
      try {
        await cp.start();
      } catch (err) {
        if (Number(opts.port) === 0) throw err;
        // Another program holds the port: the quick start should still start.
        logger.warn({ err: describeError(err) }, `port ${opts.port} is not available; using a free port instead`);
        await cp.stop().catch(() => undefined);
        cp = makeCp(0);
        await cp.start();
      }
      const api = adminApi(cp);
      const runnerDir = path.join(dir, 'runner');
      await ensurePaired(cp, api, runnerDir, logger);
      const config = await loadConfig({
        overrides: { stateDir: runnerDir, logLevel: opts.logLevel, health: { port: 0 }, controlPlane: { url: cp.url } },
      });
      const daemon = await Daemon.create({ config, logger: logger.child({ part: 'runner' }), redactor });
      let stopping: Promise<void> | undefined;
      const stopAll = (reason: string) =>
        (stopping ??= daemon.shutdown(reason).finally(() => cp.stop()));
      const remove = installSignalHandlers({ logger, shutdown: stopAll, force: () => daemon.executor.cancelAll('stop signal received twice') });
      const running = daemon.run();
      try {
        await waitConnected(api, daemon.identity.runnerId);
        await firstCall(api, daemon.identity.runnerId, logger);
        printQuickStart(cp, daemon.identity.runnerId);
        await running;
      } finally {
        remove();
        await stopAll('dev stopped');
      }
    });
}

type Api = (method: string, p: string, body?: unknown) => Promise<{ status: number; body: any }>;

function adminApi(cp: ControlPlane): Api {
  return async (method, p, body) => {
    const res = await fetch(`${cp.url}${p}`, {
      method,
      headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
}

async function ensurePaired(cp: ControlPlane, api: Api, runnerDir: string, logger: Logger): Promise<void> {
  if (await isPaired(runnerDir)) {
    const identity = await loadIdentity(runnerDir);
    const runners = await api('GET', '/v1/runners');
    if ((runners.body as Array<{ id: string }>).some((r) => r.id === identity.runnerId)) return;
    logger.warn('the dev runner was paired with another control plane; pairing it again');
    await rm(runnerDir, { recursive: true, force: true });
  }
  const token = await api('POST', '/v1/pairing-tokens', { ttlSeconds: 60 });
  if (token.status !== 201) throw new RunnerError('pairing_failed', `the dev control plane refused a pairing token (HTTP ${token.status})`);
  const identity = await pair({ url: cp.url, token: token.body.token, stateDir: runnerDir, name: 'dev-runner', labels: { env: 'dev' } });
  logger.info({ runnerId: identity.runnerId }, 'runner paired with the local control plane');
}

async function waitConnected(api: Api, runnerId: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const runners = await api('GET', '/v1/runners');
    if ((runners.body as Array<{ id: string; connected: boolean }>).some((r) => r.id === runnerId && r.connected)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new RunnerError('unreachable', 'the dev runner did not connect to the local control plane within 30 s; see the log above');
}

async function firstCall(api: Api, runnerId: string, logger: Logger): Promise<void> {
  const res = await api('POST', `/v1/runners/${runnerId}/tool-calls`, {
    name: 'javascript',
    input: { code: 'const primes = []; for (let n = 2; primes.length < 10; n++) if (primes.every(p => n % p)) primes.push(n); primes.join(" ")' },
  });
  logger.info({ status: res.body?.status, content: res.body?.content, durationMs: res.body?.durationMs }, 'first tool call (javascript, in a V8 isolate) answered');
  const bash = await api('POST', `/v1/runners/${runnerId}/tool-calls`, { name: 'bash', input: { command: 'echo "hello from $(id -un) in $(pwd)"; uname -sr' } });
  if (bash.status === 200) {
    logger.info({ status: bash.body?.status, content: bash.body?.content }, 'second tool call (bash, in a bubblewrap sandbox) answered');
  }
}

function printQuickStart(cp: ControlPlane, runnerId: string): void {
  out('');
  out(`control plane: ${cp.url}   runner: ${runnerId}   admin token file: ${cp.adminTokenPath}`);
  out('send a tool call:');
  out(
    `  curl -s -H "Authorization: Bearer $(cat ${cp.adminTokenPath})" -H 'content-type: application/json' ` +
      `-d '{"name":"javascript","input":{"code":"[1,2,3].map(x => x * 2)"}}' ${cp.url}/v1/runners/${runnerId}/tool-calls`,
  );
  out('stop with Ctrl-C');
  out('');
}

import type { Command } from 'commander';
import { loadConfig } from '../../config/load-config.js';
import type { DaemonStatus } from '../../daemon/daemon.js';
import { RunnerError } from '../../util/errors.js';
import { out } from '../cli-context.js';

/**
 * `sandbox-runner status [--health-url URL] [--json]`: asks a running daemon
 * (its loopback `GET /status`) what it serves and prints the leased Managed
 * Agents sessions. Exit 1 when no daemon answers.
 */
export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description('show what a running daemon serves: the control plane link and the leased Managed Agents sessions')
    .option('--config <file>', 'config file (YAML); the daemon is found at its health.host and health.port')
    .option('--health-url <url>', 'the daemon\'s health endpoint, e.g. http://127.0.0.1:9464 (overrides the config)')
    .option('--json', 'print the status as JSON')
    .action(async (opts: { config?: string; healthUrl?: string; json?: boolean }) => {
      const base = opts.healthUrl ?? (await healthUrlFromConfig(opts.config));
      const status = await fetchStatus(base);
      if (opts.json) return out(JSON.stringify(status, null, 2));
      out(`runner ${status.runnerId} (version ${status.version}), ${status.callsInFlight} call(s) in flight`);
      out(`control plane: ${status.controlPlane.enabled ? (status.controlPlane.connected ? 'connected' : 'not connected') : 'disabled'}`);
      const ma = status.managedAgents;
      if (!ma) return out('managed agents: not configured');
      out(`managed agents: ${ma.state}, environment ${ma.environmentId}, worker ${ma.workerId}, ${ma.sessions.length}/${ma.maxSessions} session(s) leased`);
      for (const s of ma.sessions) {
        out(`  ${s.sessionId}  work ${s.workId}  ${s.phase}  since ${s.since}  ${s.toolCalls} call(s)${s.currentTool ? `  running ${s.currentTool}` : ''}  credential ${s.credential}`);
      }
    });
}

async function healthUrlFromConfig(file: string | undefined): Promise<string> {
  const config = await loadConfig(file ? { file } : {});
  if (!config.health.enabled) {
    throw new RunnerError('usage', 'health.enabled is false in the config, so the daemon serves no status; enable it or pass --health-url');
  }
  if (config.health.port === 0) throw new RunnerError('usage', 'health.port is 0 (a random port) in the config; pass --health-url with the port the daemon logged');
  const host = config.health.host === '0.0.0.0' ? '127.0.0.1' : config.health.host === '::' ? '::1' : config.health.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${config.health.port}`;
}

async function fetchStatus(base: string): Promise<DaemonStatus> {
  const url = new URL('/status', base).toString();
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new RunnerError('unreachable', `no daemon answered at ${url}; is sandbox-runner start running with health enabled on that address?`, { detail: String((err as Error).cause ?? err) });
  }
  if (!res.ok) throw new RunnerError('unreachable', `${url} answered ${res.status}; this daemon serves no status (an older version?)`);
  return (await res.json()) as DaemonStatus;
}

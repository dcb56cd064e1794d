import { statfs } from 'node:fs/promises';
import { execa } from 'execa';
import type { ProcessExit, SandboxProcess } from '../driver.js';
import type { CgroupEvents } from '../cgroups/cgroups.js';
import { isGone } from '../process-gone.js';
import { RunnerError } from '../../util/errors.js';
import { ENV_CARRIER, ENV_NAME, EXEC_WRAPPER } from './docker-args.js';

export interface DockerExecOptions {
  cli: string;
  containerId: string;
  /** Unique per exec: names the pid file of its process group. */
  execId: string;
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  events: (() => Promise<CgroupEvents>) | undefined;
  /**
   * The container's first process on this host (the engine's State.Pid), when
   * the engine runs here. Under gVisor a memory overrun kills the whole
   * sandbox kernel and `docker exec` then waits forever: its death is how the
   * run learns that the container stopped.
   */
  initPid?: number;
  workspaceDir: string;
  workspaceCapped: boolean;
  monitorIntervalMs: number;
  signal?: AbortSignal;
}

/**
 * One `docker exec -i` into a sandbox container. Environment values travel in
 * the CLI's own environment under carrier names (`-e SANDBOX_RUNNER_ENV_0`),
 * never in its argv, so they do not show in the host's process list; the
 * wrapper inside renames them. The CLI's own PATH and DOCKER_HOST are the
 * runner's, whatever the call asks for.
 * @throws RunnerError `invalid_input` for a variable name that is not a shell identifier.
 */
export async function startDockerExec(o: DockerExecOptions): Promise<SandboxProcess> {
  const envNames = Object.keys(o.env);
  const bad = envNames.find((name) => !ENV_NAME.test(name));
  if (bad !== undefined) {
    throw new RunnerError('invalid_input', `environment variable name ${JSON.stringify(bad.slice(0, 100))} is not valid in a docker sandbox; use letters, digits and _ (not starting with a digit or ${ENV_CARRIER})`);
  }
  const baseline = (await o.events?.()) ?? { oomKills: 0, pidsMax: 0 };
  const carried: Record<string, string> = {};
  const args = ['exec', '-i', '--workdir', o.cwd];
  envNames.forEach((name, i) => {
    carried[`${ENV_CARRIER}${i}`] = o.env[name]!;
    args.push('-e', `${ENV_CARRIER}${i}`);
  });
  args.push(o.containerId, '/bin/sh', '-c', EXEC_WRAPPER, 'sandbox-exec', o.execId, String(envNames.length), ...envNames, ...o.argv);
  const child = execa(o.cli, args, {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
    reject: false,
    extendEnv: false,
    env: { ...carried, PATH: process.env.PATH ?? '/usr/bin:/bin', ...(process.env.DOCKER_HOST ? { DOCKER_HOST: process.env.DOCKER_HOST } : {}) },
  });
  let limit: ProcessExit['limit'];
  let killed = false;
  let dead = false;
  const kill = (): void => {
    if (killed || dead) return;
    killed = true;
    // The group inside first (the CLI's death would not reach it), then the CLI.
    void execa(o.cli, ['exec', o.containerId, '/bin/sh', '-c', 'kill -9 -"$(cat "/tmp/.sandbox-runner-$1.pid")"', 'sandbox-kill', o.execId], { reject: false })
      .then(() => child.kill('SIGKILL'));
  };
  const endFor = (why: NonNullable<ProcessExit['limit']>): void => {
    limit ??= why;
    kill();
  };
  const check = async (exitCode?: number | null): Promise<void> => {
    if (o.events) {
      const ev = await o.events();
      if (ev.oomKills > baseline.oomKills) return endFor('memory');
      if (ev.pidsMax > baseline.pidsMax) return endFor('processes');
    }
    // After the counters: a limit they saw is the more exact reason the container stopped.
    if (o.initPid !== undefined && isGone(o.initPid)) {
      const state = await execa(o.cli, ['inspect', '--format', '{{.State.OOMKilled}}', o.containerId], { reject: false });
      return endFor(String(state.stdout).trim() === 'true' ? 'memory' : 'sandbox_stopped');
    }
    if (o.workspaceCapped && exitCode !== 0) {
      const fs = await statfs(o.workspaceDir).catch(() => undefined);
      if (fs && fs.bavail === 0) return endFor('disk');
    }
  };
  let checking = false;
  const monitor = setInterval(() => {
    if (checking) return;
    checking = true;
    void check().finally(() => (checking = false));
  }, o.monitorIntervalMs);
  monitor.unref();
  const onAbort = (): void => kill();
  if (o.signal?.aborted) onAbort();
  else o.signal?.addEventListener('abort', onAbort, { once: true });

  const exited = child.then(async (r) => {
    dead = true;
    clearInterval(monitor);
    o.signal?.removeEventListener('abort', onAbort);
    await check(r.exitCode).catch(() => undefined);
    // docker exec reports a signalled command as 128 + signo.
    const code = r.exitCode ?? null;
    const signal = (r.signal as NodeJS.Signals | undefined) ?? (code !== null && code > 128 && killed ? 'SIGKILL' : null);
    return { code, signal, ...(limit ? { limit } : {}) } satisfies ProcessExit;
  });
  return { stdin: child.stdin!, stdout: child.stdout!, stderr: child.stderr!, exited, kill };
}

import type { Command } from 'commander';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig, type CompiledConfig } from '../../config/load-config.js';
import { checkStateDir } from '../../credentials/index.js';
import { isPaired } from '../../identity/identity.js';
import { checkManagedAgents, type DoctorCheck } from '../../managed-agents/index.js';
import { removeEmptyCgroupParent } from '../../sandbox/cgroups/cgroups.js';
import { DriverRegistry } from '../../sandbox/driver-registry.js';
import { describeError, isRunnerError } from '../../util/errors.js';
import { CliExit, EXIT_FAILURE, out } from '../cli-context.js';

const SECRET_FILES = ['identity.json', 'secret-keys.json', 'vault.key', 'nonces.jsonl', 'calls.jsonl'];

/**
 * `sandbox-runner doctor [--config FILE] [--json]`: one line per check (state
 * dir, identity, sandbox drivers, Managed Agents key and queue). Exit 0 when
 * every check passes, 1 when one fails. Never prints a key.
 */
export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('check the state dir, the sandbox drivers and the Managed Agents environment key and queue')
    .option('--config <file>', 'config file (YAML)')
    .option('--state-dir <dir>', 'state directory (overrides the config)')
    .option('--json', 'print the checks as JSON')
    .action(async (opts: { config?: string; stateDir?: string; json?: boolean }) => {
      const config = await loadConfig({ ...(opts.config ? { file: opts.config } : {}), overrides: opts.stateDir ? { stateDir: opts.stateDir } : {} });
      const checks = [...(await stateChecks(config)), ...(await driverChecks(config)), ...(await managedAgentsChecks(config))];
      if (opts.json) out(JSON.stringify({ ok: checks.every((c) => c.ok), checks }, null, 2));
      else for (const c of checks) out(`${c.ok ? 'ok  ' : 'FAIL'}  ${c.name}: ${c.message}`);
      if (!checks.every((c) => c.ok)) throw new CliExit(EXIT_FAILURE);
    });
}

async function stateChecks(config: CompiledConfig): Promise<DoctorCheck[]> {
  const dir = config.stateDir;
  const exists = await stat(dir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!exists) {
    // A missing state dir is normal before the first start; start makes it 0700.
    const paired = config.controlPlane.enabled
      ? { name: 'identity', ok: false, message: `not paired; run sandbox-runner pair --url URL --token TOKEN --state-dir ${dir}` }
      : { name: 'identity', ok: true, message: 'the control plane is disabled; start makes a local identity for the audit log' };
    return [{ name: 'state dir', ok: true, message: `${dir} does not exist yet; start creates it (0700)` }, paired];
  }
  const checks: DoctorCheck[] = [];
  try {
    await checkStateDir(dir, { secretFiles: SECRET_FILES });
    checks.push({ name: 'state dir', ok: true, message: `${dir}: owner-only permissions` });
  } catch (err) {
    checks.push({ name: 'state dir', ok: false, message: isRunnerError(err) ? err.message : describeError(err) });
  }
  const paired = await isPaired(dir);
  if (config.controlPlane.enabled) {
    checks.push(
      paired
        ? { name: 'identity', ok: true, message: `paired (${path.join(dir, 'identity.json')})` }
        : { name: 'identity', ok: false, message: `not paired; run sandbox-runner pair --url URL --token TOKEN --state-dir ${dir}` },
    );
  } else {
    checks.push({ name: 'identity', ok: true, message: paired ? 'identity present; the control plane is disabled' : 'the control plane is disabled; start makes a local identity for the audit log' });
  }
  return checks;
}

/** Probes bwrap and docker without touching a running daemon's sandboxes. A driver nobody uses may be missing. */
async function driverChecks(config: CompiledConfig): Promise<DoctorCheck[]> {
  // The cgroup probe makes its parent folders; doctor's own, removed after it, so a check leaves nothing behind.
  const cgroupParent = `sandbox-runner-doctor-${process.pid}`;
  const registry = new DriverRegistry({
    bwrap: { imagesDir: config.sandbox.imagesDir, workRoot: config.sandbox.workDir, bwrapPath: config.sandbox.bwrap.binary, cgroupParent },
    docker: {
      workRoot: config.sandbox.workDir,
      cli: config.sandbox.docker.binary,
      owner: 'doctor',
      ...(config.sandbox.docker.runtime ? { runtime: config.sandbox.docker.runtime } : {}),
    },
    cleanupOrphans: false,
  });
  const used = new Set<string>([config.sandbox.defaultDriver]);
  if (config.managedAgents || process.env.ANTHROPIC_ENVIRONMENT_ID) used.add(config.managedAgents?.driver ?? 'bwrap');
  const reports = await registry.start(AbortSignal.timeout(30_000)).finally(() => removeEmptyCgroupParent(cgroupParent));
  return reports.map((r) => {
    const needed = used.has(r.name);
    const detail = r.available ? (r.message ?? 'available') : `${r.message ?? 'unavailable'}${r.fix ? `; fix: ${r.fix}` : ''}`;
    return { name: `driver ${r.name}`, ok: r.available || !needed, message: needed || r.available ? detail : `${detail} (not used by this config)` };
  });
}

async function managedAgentsChecks(config: CompiledConfig): Promise<DoctorCheck[]> {
  const managed = config.managedAgents ?? (process.env.ANTHROPIC_ENVIRONMENT_ID ? {} : undefined);
  if (!managed) return [];
  return checkManagedAgents(managed, {
    configDir: config.source.file ? path.dirname(path.resolve(config.source.file)) : process.cwd(),
    signal: AbortSignal.timeout(30_000),
  });
}

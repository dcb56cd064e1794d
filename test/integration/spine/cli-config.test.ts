import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, runCli } from '../../helpers/processes.js';

describe('sandbox-runner config check and start errors', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'clicfg-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('accepts the example config with every key', async () => {
    const r = await runCli(['config', 'check', path.join(REPO, 'config', 'sandbox-runner.example.yaml')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/ok \(state dir \/var\/lib\/sandbox-runner, default driver bwrap\)/);
  });

  it('accepts the example with its commented policy and managedAgents sections switched on', async () => {
    const keyFile = path.join(dir, 'environment-key');
    await writeFile(keyFile, 'sk-ant-env-example-key', { mode: 0o600 });
    let text = await readFile(path.join(REPO, 'config', 'sandbox-runner.example.yaml'), 'utf8');
    // Uncomment a section: its header and its indented lines.
    const uncomment = (header: string) => {
      const lines = text.split('\n');
      const start = lines.indexOf(`# ${header}:`);
      expect(start).toBeGreaterThan(0);
      lines[start] = `${header}:`;
      for (let i = start + 1; i < lines.length && lines[i]!.startsWith('#   '); i++) lines[i] = lines[i]!.replace(/^#   /, '  ');
      text = lines.join('\n');
    };
    uncomment('policy');
    uncomment('managedAgents');
    text = text.replace('/etc/sandbox-runner/environment-key', keyFile).replace('env_...', 'env_example');
    const file = path.join(dir, 'full.yaml');
    await writeFile(file, text);
    const r = await runCli(['config', 'check', file, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const effective = JSON.parse(r.stdout);
    expect(effective.policy.vault.DEPLOY_TOKEN.tools).toEqual(['exec', 'bash']);
    expect(effective.managedAgents.environmentId).toBe('env_example');
  });

  it('names a bad key and its fix, exit 2', async () => {
    const file = path.join(dir, 'bad.yaml');
    await writeFile(file, 'sandbox:\n  defaultDriver: firecracker\n');
    const r = await runCli(['config', 'check', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/sandbox\.defaultDriver: .*use one of "bwrap", "docker"/);
  });

  it('start refuses a config that fails, before doing anything', async () => {
    const file = path.join(dir, 'typo.yaml');
    await writeFile(file, `stateDir: ${dir}/state\ncals:\n  maxConcurrent: 2\n`);
    const r = await runCli(['start', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Unrecognized key: "cals"/);
  });

  it('start without pairing says how to pair', async () => {
    const r = await runCli(['start', '--state-dir', path.join(dir, 'empty')], { SANDBOX_RUNNER_HEALTH__PORT: '0' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not paired .* run sandbox-runner pair --url URL --token TOKEN/);
  });

  it('an unknown command or option is a usage error', async () => {
    expect((await runCli(['frobnicate'])).code).toBe(2);
    expect((await runCli(['pair', '--bogus'])).code).toBe(2);
  });
});

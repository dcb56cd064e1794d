import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { envOverrides, loadConfig } from '../../../src/config/load-config.js';
import { RunnerError } from '../../../src/util/errors.js';

describe('loadConfig', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cfg-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('fills defaults and resolves paths against the file', async () => {
    const file = path.join(dir, 'runner.yaml');
    await writeFile(file, 'stateDir: ./state\ncalls:\n  maxConcurrent: 3\n');
    const c = await loadConfig({ file, env: {} });
    expect(c.stateDir).toBe(path.join(dir, 'state'));
    expect(c.calls.maxConcurrent).toBe(3);
    expect(c.calls.defaultTimeoutMs).toBe(120_000);
    expect(c.sandbox.workDir).toBe(path.join(dir, 'state-work'));
  });

  it('names each bad key with its path and the fix', async () => {
    const file = path.join(dir, 'runner.yaml');
    await writeFile(file, 'calls:\n  maxConcurent: 3\n  defaultTimeoutMs: soon\nlogLevel: loud\n');
    const err = await loadConfig({ file, env: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RunnerError);
    const msg = (err as RunnerError).message;
    expect(msg).toContain('calls: Unrecognized key: "maxConcurent"');
    expect(msg).toContain('remove "maxConcurent"');
    expect(msg).toMatch(/calls\.defaultTimeoutMs: .*expected number/);
    expect(msg).toMatch(/logLevel: .*use one of "fatal"/);
  });

  it('lets SANDBOX_RUNNER_* override the file, and flags override both', async () => {
    const file = path.join(dir, 'runner.yaml');
    await writeFile(file, 'calls:\n  maxConcurrent: 3\nlogLevel: warn\n');
    const env = { SANDBOX_RUNNER_CALLS__MAX_CONCURRENT: '5', SANDBOX_RUNNER_LOG_LEVEL: 'debug' };
    const c = await loadConfig({ file, env, overrides: { logLevel: 'error' } });
    expect(c.calls.maxConcurrent).toBe(5);
    expect(c.logLevel).toBe('error');
  });

  it('maps variable names to nested camelCase keys', () => {
    expect(envOverrides({ SANDBOX_RUNNER_SANDBOX__DEFAULT_DRIVER: 'docker', SANDBOX_RUNNER_CONFIG: '/x', OTHER: '1' })).toEqual({
      sandbox: { defaultDriver: 'docker' },
    });
  });

  it('fails on a named file that does not exist', async () => {
    const err = await loadConfig({ file: path.join(dir, 'nope.yaml'), env: {} }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'config_missing' });
  });

  it('fails on YAML that is not a mapping', async () => {
    const file = path.join(dir, 'runner.yaml');
    await writeFile(file, '- a\n- b\n');
    await expect(loadConfig({ file, env: {} })).rejects.toThrow(/top level must be a mapping/);
  });
});

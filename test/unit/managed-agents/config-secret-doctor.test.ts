import { afterEach, describe, expect, it } from 'vitest';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { resolveManagedAgentsConfig, ManagedAgentsConfigSchema } from '../../../src/managed-agents/config.js';
import { decodeWorkSecret } from '../../../src/managed-agents/work-secret.js';
import { checkManagedAgents } from '../../../src/managed-agents/doctor.js';
import { stripAnthropicEnv } from '../../../src/managed-agents/worker-host.js';
import { FakeAnthropic } from '../../fakes/anthropic/fake-anthropic.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function keyFile(content: string, mode: number): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'sr-ma-key-'));
  dirs.push(d);
  const f = path.join(d, 'key');
  await writeFile(f, content);
  await chmod(f, mode);
  return f;
}

describe('config', () => {
  it('describes every key', () => {
    for (const [k, v] of Object.entries(ManagedAgentsConfigSchema.shape)) expect((v as { description?: string }).description, k).toBeTruthy();
  });

  it('reads the key file; env overrides id, key and base URL', async () => {
    const f = await keyFile('sk-ant-oat01-abc\n', 0o600);
    const r = await resolveManagedAgentsConfig({ environmentId: 'env_file', environmentKeyFile: f }, {});
    expect(r).toMatchObject({ environmentId: 'env_file', environmentKey: 'sk-ant-oat01-abc', baseUrl: 'https://api.anthropic.com', maxSessions: 4, maxIdleMs: 60_000 });
    const e = await resolveManagedAgentsConfig({ environmentId: 'env_file', environmentKeyFile: f }, { ANTHROPIC_ENVIRONMENT_ID: 'env_env', ANTHROPIC_ENVIRONMENT_KEY: 'sk-ant-oat01-env', ANTHROPIC_BASE_URL: 'http://127.0.0.1:9/' });
    expect(e).toMatchObject({ environmentId: 'env_env', environmentKey: 'sk-ant-oat01-env', baseUrl: 'http://127.0.0.1:9' });
  });

  it('refuses a group-readable key file and a missing one, naming the fix', async () => {
    const f = await keyFile('sk-ant-oat01-abc', 0o644);
    await expect(resolveManagedAgentsConfig({ environmentId: 'env_x', environmentKeyFile: f }, {})).rejects.toThrow(/chmod 600/);
    await expect(resolveManagedAgentsConfig({ environmentId: 'env_x' }, {})).rejects.toThrow(/environmentKeyFile is not set/);
    await expect(resolveManagedAgentsConfig({ environmentId: 'env_x', maxSessions: 0 }, {})).rejects.toThrow(/managedAgents\.maxSessions/);
  });
});

describe('work secret', () => {
  const payload = { sessions_token: 'sk-ant-req-xyz', api_base_url: 'https://api.anthropic.com' };
  it('decodes URL-safe base64 with and without padding', () => {
    const b64 = Buffer.from(JSON.stringify(payload)).toString('base64');
    const url = b64.replace(/\+/g, '-').replace(/\//g, '_');
    for (const s of [b64, url, url.replace(/=+$/, '')]) expect(decodeWorkSecret(s)).toEqual({ ok: true, sessionsToken: 'sk-ant-req-xyz', apiBaseUrl: 'https://api.anthropic.com' });
  });
  it('says why it cannot be used, without echoing it', () => {
    expect(decodeWorkSecret(null)).toEqual({ ok: false, reason: 'absent' });
    expect(decodeWorkSecret('%%%')).toEqual({ ok: false, reason: 'undecodable' });
    expect(decodeWorkSecret(Buffer.from('{"x":1}').toString('base64url'))).toEqual({ ok: false, reason: 'no_token' });
  });
});

describe('sandbox environment', () => {
  it('strips every ANTHROPIC_* variable', () => {
    expect(stripAnthropicEnv({ PATH: '/bin', ANTHROPIC_ENVIRONMENT_KEY: 'k', ANTHROPIC_API_KEY: 'a', anthropic_base_url: 'u' })).toEqual({ PATH: '/bin' });
  });
});

describe('doctor', () => {
  it('checks the key file and that the queue answers; a wrong key is named, not printed', async () => {
    const fake = new FakeAnthropic();
    await fake.start();
    try {
      const good = await keyFile(fake.environmentKey, 0o600);
      const ok = await checkManagedAgents({ environmentId: fake.environmentId, environmentKeyFile: good, baseUrl: fake.url }, { env: {} });
      expect(ok.map((c) => c.ok)).toEqual([true, true]);
      const bad = await keyFile('sk-ant-oat01-wrongkey', 0o600);
      const refused = await checkManagedAgents({ environmentId: fake.environmentId, environmentKeyFile: bad, baseUrl: fake.url }, { env: {} });
      expect(refused[1]).toMatchObject({ ok: false, message: expect.stringMatching(/refused the environment key \(401\)/) });
      expect(JSON.stringify(refused)).not.toContain('wrongkey');
    } finally {
      await fake.close();
    }
  });
});

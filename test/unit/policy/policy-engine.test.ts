import { describe, expect, it } from 'vitest';
import { PolicyEngine } from '../../../src/policy/policy-engine.js';
import { PolicySchema } from '../../../src/policy/policy-schema.js';
import { isRunnerError } from '../../../src/util/errors.js';

function denied(engine: PolicyEngine, request: Parameters<PolicyEngine['check']>[0]): { rule: string; message: string } {
  const result = engine.check(request);
  if (result.ok) throw new Error(`expected a refusal for ${JSON.stringify(request)}`);
  expect(result.code).toBe('policy_denied');
  return result;
}

describe('PolicySchema', () => {
  it('fills safe defaults: every tool, no network, no vault entries', () => {
    const p = PolicySchema.parse({});
    expect(p.tools.allow).toEqual(['*']);
    expect(p.network).toEqual({ allow: [], allowPrivate: false, allowLoopback: false, allowMetadata: false });
    expect(p.vault).toEqual({});
    expect(p.maxConcurrentCalls).toBe(8);
  });

  it('describes every key, nested ones included', () => {
    const missing: string[] = [];
    const walk = (schema: unknown, path: string): void => {
      let inner = schema as { description?: string; def: { type: string; innerType?: unknown; valueType?: unknown }; shape?: Record<string, unknown> };
      while (inner.def.innerType) inner = inner.def.innerType as typeof inner;
      if (inner.shape) {
        for (const [key, child] of Object.entries(inner.shape)) {
          if (!(child as { description?: string }).description) missing.push(`${path}.${key}`);
          walk(child, `${path}.${key}`);
        }
      }
      if (inner.def.type === 'record') walk(inner.def.valueType, `${path}.<name>`);
    };
    walk(PolicySchema, 'policy');
    expect(missing).toEqual([]);
  });
});

describe('PolicyEngine', () => {
  it('allows a request within policy and returns capped limits', () => {
    const engine = new PolicyEngine({ limits: { wallTimeMs: 60_000, memoryBytes: 1_000_000 } });
    const result = engine.check({ tool: 'bash', driver: 'bwrap', limits: { wallTimeMs: 600_000, memoryBytes: 500_000 }, inFlight: 0 });
    expect(result).toEqual({
      ok: true,
      limits: { wallTimeMs: 60_000, memoryBytes: 500_000, maxProcesses: 1024, outputBytes: 64 * 1024 ** 2, workspaceBytes: 10 * 1024 ** 3 },
    });
  });

  it('refuses over a ceiling when onExceed is deny', () => {
    const engine = new PolicyEngine({ limits: { outputBytes: 1000, cpus: 2, onExceed: 'deny' } });
    expect(denied(engine, { tool: 'bash', limits: { outputBytes: 1001 } }).rule).toBe('limits.outputBytes');
    expect(denied(engine, { tool: 'bash', limits: { cpus: 4 } }).rule).toBe('limits.cpus');
    expect(engine.check({ tool: 'bash', limits: { cpus: 1 } })).toMatchObject({ ok: true, limits: { cpus: 1, outputBytes: 1000 } });
  });

  it('applies tools.allow and tools.deny', () => {
    const engine = new PolicyEngine({ tools: { allow: ['bash', 'str_replace_based_edit_tool', 'read*'], deny: ['bash'] } });
    expect(denied(engine, { tool: 'bash' }).rule).toBe('tools.deny');
    const r = denied(engine, { tool: 'javascript' });
    expect(r.rule).toBe('tools.allow');
    expect(r.message).toContain('javascript');
    expect(engine.check({ tool: 'read_file' }).ok).toBe(true);
  });

  it('applies drivers.allow and images.allow', () => {
    const engine = new PolicyEngine({ drivers: { allow: ['isolate', 'bwrap'] }, images: { allow: ['debian-base', 'python*'] } });
    expect(denied(engine, { tool: 'bash', driver: 'docker' }).rule).toBe('drivers.allow');
    expect(denied(engine, { tool: 'bash', image: 'ubuntu' }).rule).toBe('images.allow');
    expect(engine.check({ tool: 'bash', driver: 'bwrap', image: 'python-3.12' }).ok).toBe(true);
  });

  it('keeps the network inside the widest allowlist', () => {
    const engine = new PolicyEngine({ network: { allow: ['*.github.com', 'pypi.org', '203.0.113.0/24'] } });
    expect(engine.check({ tool: 'bash', network: { allow: ['api.github.com', 'pypi.org', '203.0.113.7', '*.api.github.com'] } }).ok).toBe(true);
    expect(denied(engine, { tool: 'bash', network: { allow: ['github.com'] } }).rule).toBe('network.allow');
    expect(denied(engine, { tool: 'bash', network: { allow: ['evil.com'] } }).rule).toBe('network.allow');
    expect(denied(engine, { tool: 'bash', network: { allow: ['*'] } }).rule).toBe('network.allow');
    expect(denied(engine, { tool: 'bash', network: { allow: ['*.com'] } }).rule).toBe('network.allow');
  });

  it('refuses private, loopback and metadata destinations unless allowed, even under "*"', () => {
    const open = new PolicyEngine({ network: { allow: ['*'] } });
    expect(open.check({ tool: 'bash', network: { allow: ['example.org', '8.8.8.8'] } }).ok).toBe(true);
    expect(denied(open, { tool: 'bash', network: { allow: ['10.1.2.3'] } }).rule).toBe('network.allowPrivate');
    expect(denied(open, { tool: 'bash', network: { allow: ['db.internal'] } }).rule).toBe('network.allowPrivate');
    expect(denied(open, { tool: 'bash', network: { allow: ['localhost'] } }).rule).toBe('network.allowLoopback');
    expect(denied(open, { tool: 'bash', network: { allow: ['[::1]'] } }).rule).toBe('network.allowLoopback');
    expect(denied(open, { tool: 'bash', network: { allow: ['169.254.169.254'] } }).rule).toBe('network.allowMetadata');
    expect(denied(open, { tool: 'bash', network: { allow: ['metadata.google.internal'] } }).rule).toBe('network.allowMetadata');

    const privateOk = new PolicyEngine({ network: { allow: ['*', '10.0.0.0/8'], allowPrivate: true } });
    expect(privateOk.check({ tool: 'bash', network: { allow: ['10.1.2.3', '10.2.0.0/16'] } }).ok).toBe(true);
    // "*" alone does not reach private ranges: they need an entry of their own.
    expect(denied(privateOk, { tool: 'bash', network: { allow: ['192.168.1.1'] } }).rule).toBe('network.allow');
  });

  it('grants vault entries per tool and per session label', () => {
    const engine = new PolicyEngine({
      vault: {
        DB_PASSWORD: { tools: ['bash'] },
        DEPLOY_KEY: { tools: ['*'], sessionLabels: ['deploy'] },
      },
    });
    expect(engine.check({ tool: 'bash', vaultRefs: ['DB_PASSWORD'] }).ok).toBe(true);
    expect(denied(engine, { tool: 'javascript', vaultRefs: ['DB_PASSWORD'] }).rule).toBe('vault.DB_PASSWORD.tools');
    expect(denied(engine, { vaultRefs: ['DB_PASSWORD'] }).rule).toBe('vault.DB_PASSWORD.tools');
    expect(denied(engine, { tool: 'bash', vaultRefs: ['OTHER'] }).rule).toBe('vault.OTHER');
    expect(denied(engine, { tool: 'bash', vaultRefs: ['DEPLOY_KEY'], labels: ['dev'] }).rule).toBe('vault.DEPLOY_KEY.sessionLabels');
    expect(engine.check({ vaultRefs: ['DEPLOY_KEY'], labels: ['deploy'] }).ok).toBe(true);
  });

  it('caps concurrent calls', () => {
    const engine = new PolicyEngine({ maxConcurrentCalls: 2 });
    expect(engine.check({ tool: 'bash', inFlight: 1 }).ok).toBe(true);
    expect(denied(engine, { tool: 'bash', inFlight: 2 }).rule).toBe('maxConcurrentCalls');
  });

  it('reloads atomically and keeps the old policy when the new one is invalid', () => {
    const engine = new PolicyEngine({ tools: { allow: ['bash'] } });
    expect(engine.check({ tool: 'javascript' }).ok).toBe(false);
    engine.reload({ tools: { allow: ['javascript'] } });
    expect(engine.check({ tool: 'javascript' }).ok).toBe(true);
    let err: unknown;
    try {
      engine.reload({ tools: { allow: 'bash' }, maxConcurrentCalls: 0 });
    } catch (e) {
      err = e;
    }
    expect(isRunnerError(err, 'config_invalid')).toBe(true);
    expect((err as Error).message).toContain('policy.tools.allow');
    expect(engine.check({ tool: 'javascript' }).ok).toBe(true);
    expect(() => new PolicyEngine({ unknownKey: 1 })).toThrow(/policy/);
  });
});

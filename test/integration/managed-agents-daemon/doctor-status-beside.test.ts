import { readdir } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { DaemonHarness } from './daemon-harness.js';
import { closedPort, runCli, waitUntil } from '../../helpers/processes.js';
import { Spine } from '../../helpers/spine.js';

let h: DaemonHarness | undefined;
let spine: Spine | undefined;
afterEach(async (ctx) => {
  // A failed test shows the end of the runner's log: the one place that says why.
  if (ctx.task.result?.state === 'fail' && h?.runner) console.error(h.runner.output().slice(-6000));
  await h?.close();
  await spine?.stop();
  h = undefined;
  spine = undefined;
});

/** Cgroup folders a doctor run made (v2 at the root, v1 under each controller). */
async function doctorCgroups(): Promise<string[]> {
  const roots = ['/sys/fs/cgroup', '/sys/fs/cgroup/memory', '/sys/fs/cgroup/pids', '/sys/fs/cgroup/cpu'];
  const found = await Promise.all(roots.map(async (r) => (await readdir(r).catch(() => [])).filter((n) => n.startsWith('sandbox-runner-doctor-')).map((n) => `${r}/${n}`)));
  return found.flat();
}

describe('sandbox-runner doctor', () => {
  it('passes when the key file is sound and the queue answers; one line per check, or JSON', async () => {
    h = await DaemonHarness.create();
    const r = await runCli(['doctor', '--config', h.configFile]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ok {4}state dir: .*does not exist yet/m);
    expect(r.stdout).toMatch(/^ok {4}driver bwrap: /m);
    expect(r.stdout).toMatch(new RegExp(`^ok {4}managed-agents key: environment ${h.fake.environmentId}: key read, permissions ok$`, 'm'));
    expect(r.stdout).toMatch(/^ok {4}managed-agents queue: http:\/\/127\.0\.0\.1:\d+ answers: 0 queued/m);
    expect(r.stdout).not.toContain(h.fake.environmentKey);
    // Its cgroup probe leaves no folder behind (a daemon's own are sandbox-runner-<runner id>).
    expect(await doctorCgroups()).toEqual([]);

    const j = await runCli(['doctor', '--config', h.configFile, '--json']);
    expect(j.code).toBe(0);
    const parsed = JSON.parse(j.stdout) as { ok: boolean; checks: Array<{ name: string; ok: boolean }> };
    expect(parsed.ok).toBe(true);
    expect(parsed.checks.map((c) => c.name)).toEqual(expect.arrayContaining(['state dir', 'identity', 'driver bwrap', 'managed-agents key', 'managed-agents queue']));
  });

  it('fails (exit 1) naming the fix when the queue refuses the key, and when the key file is readable by others', async () => {
    h = await DaemonHarness.create({}, { keyFileContent: 'sk-ant-oat01-wrong-key' });
    const r = await runCli(['doctor', '--config', h.configFile]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAIL {2}managed-agents queue: the work queue refused the environment key \(401\); check the key/m);
    expect(r.stdout + r.stderr).not.toContain('sk-ant-oat01-wrong-key');

    const { chmod } = await import('node:fs/promises');
    await chmod(h.keyFile, 0o644);
    const loose = await runCli(['doctor', '--config', h.configFile, '--json']);
    expect(loose.code).toBe(1);
    const parsed = JSON.parse(loose.stdout) as { ok: boolean; checks: Array<{ name: string; ok: boolean; message: string }> };
    expect(parsed.ok).toBe(false);
    expect(parsed.checks.find((c) => c.name === 'managed-agents key')).toMatchObject({ ok: false, message: expect.stringMatching(/readable by group or others; run chmod 600/) });
  });
});

describe('sandbox-runner status', () => {
  it('says so (exit 1) when no daemon answers', async () => {
    const r = await runCli(['status', '--health-url', `http://127.0.0.1:${await closedPort()}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no daemon answered at http:\/\/127\.0\.0\.1:\d+\/status/);
  });
});

describe('Managed Agents beside the reference control plane', () => {
  it('one daemon serves both: a control-plane call and a Managed Agents session, each metered with its source', async () => {
    spine = await Spine.start();
    const { runnerId, stateDir } = await spine.pair('both');
    h = await DaemonHarness.create({ stateDir, controlPlane: { enabled: true, reconnectInitialMs: 100, reconnectMaxMs: 1000 } });
    await h.start();
    await spine.waitConnected(runnerId);
    await waitUntil(async () => (await fetch(`${h!.healthUrl}/readyz`)).status === 200, 20_000, 'the runner ready');
    const before = await spine.api.call(runnerId, { name: 'javascript', input: { code: '6 * 7' } });
    expect(before).toMatchObject({ status: 200, body: { status: 'completed', content: '42' } });

    let seen: { text: string; isError: boolean } | undefined;
    const { session } = h.fake.createSession({
      script: async (a) => {
        seen = await a.tool('bash', { command: 'echo from managed agents' });
        a.endTurn();
      },
    });
    await session.waitFor((e) => e.type === 'session.status_idle' && (e.stop_reason as { type: string }).type === 'end_turn');
    expect(seen).toEqual(expect.objectContaining({ text: 'from managed agents', isError: false }));
    // The control plane is still served after the Managed Agents session (its spans went over the same link).
    const after = await spine.api.call(runnerId, { name: 'javascript', input: { code: '6 * 8' } });
    expect(after).toMatchObject({ status: 200, body: { status: 'completed', content: '48' } });

    const metrics = await (await fetch(`${h.healthUrl}/metrics`)).text();
    expect(metrics).toMatch(/sandbox_runner_calls_total\{[^}]*tool="javascript"[^}]*source="control-plane"[^}]*\} 2/);
    expect(metrics).toMatch(/sandbox_runner_calls_total\{[^}]*tool="bash"[^}]*source="managed-agents"[^}]*\} 1/);
    const status = await runCli(['status', '--health-url', h.healthUrl]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(`runner ${runnerId}`);
    expect(status.stdout).toMatch(/control plane: connected/);
    expect(status.stdout).toMatch(/managed agents: running/);
  });
});

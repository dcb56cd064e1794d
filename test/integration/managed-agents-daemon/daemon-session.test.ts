import { afterEach, describe, expect, it } from 'vitest';
import { DaemonHarness, until } from './daemon-harness.js';
import { runCli, startCli } from '../../helpers/processes.js';
import type { DaemonStatus } from '../../../src/daemon/daemon.js';

let h: DaemonHarness | undefined;
afterEach(async (ctx) => {
  // A failed test shows the end of the runner's log: the one place that says why.
  if (ctx.task.result?.state === 'fail' && h?.runner) console.error(h.runner.output().slice(-6000));
  await h?.close();
  h = undefined;
});

const endTurn = (e: { type: string; stop_reason?: unknown }): boolean => e.type === 'session.status_idle' && (e.stop_reason as { type: string }).type === 'end_turn';

describe('sandbox-runner start serving Managed Agents (control plane disabled)', () => {
  it('serves a session through the six tools in bwrap with memory mounted, audited, metered, listed by status, and writes no secret', async () => {
    h = await DaemonHarness.create();
    let openGate!: () => void;
    const gate = new Promise<void>((r) => (openGate = r));
    const seen: Record<string, { text: string; isError: boolean; id: string }> = {};
    const { session, work } = h.fake.createSession({
      memoryStores: [{ memory_store_id: 'memstore_notes', name: 'Notes' }, { memory_store_id: 'memstore_rules', name: 'Team Rules', access: 'read_only' }],
      script: async (a) => {
        seen.write = await a.tool('write', { file_path: 'src/app.txt', content: 'hello world\nsecond line\n' });
        seen.read = await a.tool('read', { file_path: 'src/app.txt', view_range: [2, 2] });
        seen.edit = await a.tool('edit', { file_path: '/workspace/src/app.txt', old_string: 'world', new_string: 'sandbox' });
        seen.glob = await a.tool('glob', { pattern: '**/*.txt' });
        seen.grep = await a.tool('grep', { pattern: 'sand.ox' });
        seen.bash = await a.tool('bash', { command: 'cd src && cat app.txt && pwd' });
        seen.memory = await a.tool('bash', { command: 'ls /mnt/memory; cat /mnt/memory/notes/prefs.md; echo; env | grep -c ANTHROPIC_ || true' });
        seen.memoryWrite = await a.tool('write', { file_path: '/mnt/memory/notes/todo.md', content: 'ship it' });
        seen.memoryEdit = await a.tool('edit', { file_path: '/mnt/memory/notes/prefs.md', old_string: 'tea', new_string: 'green tea' });
        seen.readOnlyWrite = await a.tool('write', { file_path: '/mnt/memory/team-rules/rules.md', content: 'be rude' });
        await gate;
        a.message('done');
        a.endTurn();
      },
    });
    h.fake.memoryStores.get('memstore_notes')!.put('/prefs.md', 'likes tea');
    h.fake.memoryStores.get('memstore_rules')!.put('/rules.md', 'be kind');
    const runner = await h.start();

    // While the session is leased, `status` lists it.
    await until(() => seen.memoryWrite !== undefined);
    const status = await runCli(['status', '--health-url', h.healthUrl]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/control plane: disabled/);
    expect(status.stdout).toMatch(new RegExp(`managed agents: running, environment ${h.fake.environmentId}, worker \\S+, 1/4 session\\(s\\) leased`));
    expect(status.stdout).toContain(`  ${session.id}  work ${work.id}  serving`);
    const statusJson = JSON.parse((await runCli(['status', '--health-url', h.healthUrl, '--json'])).stdout);
    expect(statusJson.managedAgents.sessions[0]).toMatchObject({ sessionId: session.id, toolCalls: 10, credential: 'sessions_token' });
    openGate();

    await session.waitFor(endTurn);
    await until(() => h!.fake.queue.get(work.id).state === 'stopped');

    expect(seen.write).toMatchObject({ text: 'wrote 24 bytes to src/app.txt', isError: false });
    expect(seen.read).toMatchObject({ text: 'second line', isError: false });
    expect(seen.edit).toMatchObject({ text: 'edited /workspace/src/app.txt (1 replacement(s))', isError: false });
    expect(seen.glob).toMatchObject({ text: 'src/app.txt', isError: false });
    expect(seen.grep).toMatchObject({ text: 'src/app.txt:1:hello sandbox', isError: false });
    expect(seen.bash).toMatchObject({ text: 'hello sandbox\nsecond line\n/workspace/src', isError: false });
    // Both stores are mounted at /mnt/memory/<store>/ inside the sandbox; no ANTHROPIC_* variable inside.
    expect(seen.memory).toMatchObject({ text: 'notes\nteam-rules\nlikes tea\n0', isError: false });
    expect(seen.memoryWrite).toMatchObject({ text: 'wrote 7 bytes to /mnt/memory/notes/todo.md', isError: false });
    expect(seen.memoryEdit!.isError).toBe(false);
    expect(seen.readOnlyWrite!.isError).toBe(true);
    // The final flush wrote the new memory and the edit back to the store; the read-only store kept its text.
    expect(h.fake.memoryStores.get('memstore_notes')!.byPath('/todo.md')?.content).toBe('ship it');
    expect(h.fake.memoryStores.get('memstore_notes')!.byPath('/prefs.md')?.content).toBe('likes green tea');
    expect(h.fake.memoryStores.get('memstore_rules')!.byPath('/rules.md')?.content).toBe('be kind');

    // Metrics carry the source.
    const metrics = await (await fetch(`${h.healthUrl}/metrics`)).text();
    expect(metrics).toMatch(/sandbox_runner_calls_total\{[^}]*tool="bash"[^}]*source="managed-agents"[^}]*\} 2/);
    expect(metrics).toMatch(/sandbox_runner_calls_total\{[^}]*tool="read"[^}]*source="managed-agents"[^}]*\} 1/);

    // Every call is in the audit log with source managed-agents.
    const entries = await h.auditEntries();
    for (const call of Object.values(seen)) {
      const mine = entries.filter((e) => e.callId === call.id);
      expect(mine.map((e) => e.type)).toEqual(expect.arrayContaining(['call.received', 'call.result']));
      for (const e of mine) expect((e.fields as { source?: string }).source).toBe('managed-agents');
    }
    const shown = await runCli(['audit', 'show', seen.bash!.id, '--state-dir', h.stateDir]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(seen.bash!.id);
    expect(shown.stdout).toContain('managed-agents');

    expect(await runner.stop()).toBe(0);
    expect((await runCli(['audit', 'verify', '--state-dir', h.stateDir])).code).toBe(0);

    // Nothing the runner wrote holds the environment key or a sessions token.
    const secrets = [h.fake.environmentKey, ...h.fake.tokens.keys()];
    expect(h.fake.tokens.size).toBeGreaterThan(0);
    const written = [...(await h.writtenFiles()), { file: 'runner output', bytes: Buffer.from(runner.output()) }, { file: 'status', bytes: Buffer.from(status.stdout + JSON.stringify(statusJson)) }, { file: 'metrics', bytes: Buffer.from(metrics) }];
    expect(written.some((w) => w.file.includes('/audit/'))).toBe(true);
    for (const w of written) for (const s of secrets) expect(w.bytes.includes(s), `${w.file} holds a secret`).toBe(false);
  });

  it('applies the local policy: a bash call refused by policy is an is_error result naming policy_denied, the session carries on', async () => {
    h = await DaemonHarness.create({ policy: { tools: { deny: ['bash'] } } });
    const seen: Record<string, { text: string; isError: boolean; id: string }> = {};
    const { session } = h.fake.createSession({
      script: async (a) => {
        seen.bash = await a.tool('bash', { command: 'echo should not run' });
        seen.write = await a.tool('write', { file_path: 'a.txt', content: 'ok' });
        a.endTurn();
      },
    });
    await h.start();
    await session.waitFor(endTurn);
    expect(seen.bash!.isError).toBe(true);
    expect(seen.bash!.text).toMatch(/policy_denied/);
    expect(seen.bash!.text).not.toMatch(/should not run/);
    expect(seen.write).toMatchObject({ text: 'wrote 2 bytes to a.txt', isError: false });
    const refused = (await h.auditEntries()).filter((e) => e.callId === seen.bash!.id);
    expect(refused.length).toBeGreaterThan(0);
    for (const e of refused) expect((e.fields as { source?: string }).source).toBe('managed-agents');
  });

  it('SIGTERM in the middle of a tool: the error result is posted, the item stopped, the process exits 0', async () => {
    h = await DaemonHarness.create();
    let callId = '';
    const { session, work } = h.fake.createSession({
      script: async (a) => {
        callId = a.call('bash', { command: 'echo started; sleep 60; echo never' }).id;
      },
    });
    const runner = await h.start();
    await until(async () => {
      const s = (await (await fetch(`${h!.healthUrl}/status`)).json()) as DaemonStatus;
      return Boolean(s.managedAgents?.sessions.some((x) => x.currentTool === 'bash'));
    });
    expect(await runner.stop()).toBe(0);
    const results = session.resultsFor(callId);
    expect(results).toHaveLength(1);
    expect(results[0]!.is_error).toBe(true);
    const text = (results[0]!.content as Array<{ text: string }>)[0]!.text;
    expect(text).toMatch(/cancel/);
    expect(text).not.toMatch(/never/);
    expect(h.fake.queue.get(work.id).state).toBe('stopped');
    expect(runner.output()).toMatch(/sandbox-runner stopped/);
  });

  it('a wrong environment key stops start with a clear message and a non-zero exit, without retrying', async () => {
    h = await DaemonHarness.create({}, { keyFileContent: 'sk-ant-oat01-not-the-right-key' });
    const runner = startCli(['start', '--config', h.configFile]);
    h.runner = runner;
    const { code } = await runner.exited;
    // 2: the operator's config (the key) is wrong, as for any invalid config.
    expect(code).toBe(2);
    expect(runner.output()).toMatch(/sandbox-runner: the environment key was refused \(401\)/);
    // One refused poll, then the process is gone: no crash loop against the queue.
    expect(h.fake.hits.get('poll') ?? 0).toBeLessThanOrEqual(1);
    expect(runner.output()).not.toContain('sk-ant-oat01-not-the-right-key');
  });
});

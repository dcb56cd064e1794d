import { afterEach, describe, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { startHarness, type Harness } from './harness.js';
import { FakeAnthropic } from '../../fakes/anthropic/fake-anthropic.js';
import { createWorkerClient } from '../../../src/managed-agents/api-client.js';
import { MemoryMounts } from '../../../src/managed-agents/memory-mounts.js';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 20));
}

describe('shutdown, memory and secrets', () => {
  it('shutdown in the middle of a tool cancels it, posts its error result and stops the item', async () => {
    h = await startHarness();
    let callId = '';
    const { session, work } = h.fake.createSession({
      script: async (a) => {
        const c = a.call('bash', { command: 'echo started; sleep 30; echo never' });
        callId = c.id;
      },
    });
    await until(() => h!.connector.status().sessions.some((s) => s.currentTool === 'bash'));
    await new Promise((r) => setTimeout(r, 200));
    await h.connector.shutdown();
    const results = session.resultsFor(callId);
    expect(results).toHaveLength(1);
    expect(results[0]!.is_error).toBe(true);
    const text = (results[0]!.content as Array<{ text: string }>)[0]!.text;
    expect(text).toMatch(/cancelled because the worker is shutting down/);
    expect(text).not.toMatch(/never/);
    expect(h.fake.queue.get(work.id).state).toBe('stopped');
    expect(h.host.sessions.size).toBe(0);
  });

  it('a malformed secret falls back to the environment key and logs so without printing either', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) });
    h = await startHarness({ connector: { logger: pino({ level: 'debug' }, sink) } });
    const { session, work } = h.fake.createSession({ script: async (a) => (await a.tool('bash', { command: 'env | grep -c ^ANTHROPIC || true' }), a.endTurn()) }, { rawSecret: 'not%base64!' });
    await session.waitFor((e) => e.type === 'session.status_idle' && (e.stop_reason as { type: string }).type === 'end_turn');
    await until(() => h!.fake.queue.get(work.id).state === 'stopped');
    const log = lines.join('');
    expect(log).toMatch(/falling back to the environment key/);
    expect(log).not.toContain(h.fake.environmentKey);
    expect(log).not.toContain('not%base64!');
    for (const t of h.fake.tokens.keys()) expect(log).not.toContain(t);
    expect([...h.fake.credentialsSeen]).toEqual([h.fake.environmentKey]);
    expect(session.events.find((e) => e.type === 'user.tool_result')!.content).toEqual([{ type: 'text', text: '0' }]);
  });
});

describe('memory stores', () => {
  it('pulls at mount, syncs a local write back, and lets the store win a conflict', async () => {
    const fake = new FakeAnthropic();
    await fake.start();
    const root = await mkdtemp(path.join(os.tmpdir(), 'sr-ma-mem-'));
    try {
      const { session } = fake.createSession({ memoryStores: [{ memory_store_id: 'memstore_1', name: 'User Notes' }, { memory_store_id: 'memstore_ro', name: 'Team Rules', access: 'read_only' }] });
      const store = fake.memoryStores.get('memstore_1')!;
      store.put('/prefs.md', 'likes tea');
      fake.memoryStores.get('memstore_ro')!.put('/rules.md', 'be kind');
      // Memory routes need the sessions token: claim the item as a worker would.
      const work = await (await fetch(`${fake.url}/v1/environments/${fake.environmentId}/work/poll?block_ms=10`, { headers: { authorization: `Bearer ${fake.environmentKey}`, 'anthropic-beta': 'managed-agents-2026-04-01' } })).json() as { secret: string };
      const token = JSON.parse(Buffer.from(work.secret, 'base64url').toString()).sessions_token as string;
      const client = createWorkerClient({ baseUrl: fake.url, credential: token, helper: 'environments-worker' });
      const mounts = new MemoryMounts({
        client,
        root,
        sessionKey: session.id,
        stores: [
          { id: 'memstore_1', name: 'User Notes', mountPath: '/mnt/memory/user-notes', readOnly: false },
          { id: 'memstore_ro', name: 'Team Rules', mountPath: '/mnt/memory/team-rules', readOnly: true },
        ],
        intervalMs: 5_000,
      });
      await mounts.mount(AbortSignal.timeout(10_000));
      expect(mounts.hostMounts().map((m) => [m.path, m.readOnly])).toEqual([['/mnt/memory/user-notes', false], ['/mnt/memory/team-rules', true]]);
      const [notes, rules] = mounts.hostMounts().map((m) => m.hostPath) as [string, string];
      expect(await readFile(path.join(notes, 'prefs.md'), 'utf8')).toBe('likes tea');

      // The agent writes (through the mount) a new memory and edits one; the read-only store is edited locally too.
      await writeFile(path.join(notes, 'todo.md'), 'buy milk');
      await writeFile(path.join(notes, 'prefs.md'), 'likes coffee');
      await writeFile(path.join(rules, 'rules.md'), 'local edit');
      await mounts.sync();
      expect(store.byPath('/todo.md')?.content).toBe('buy milk');
      expect(store.byPath('/prefs.md')?.content).toBe('likes coffee');
      expect(fake.memoryStores.get('memstore_ro')!.byPath('/rules.md')?.content).toBe('be kind');

      // Both sides change the same memory: the store wins, locally too.
      await writeFile(path.join(notes, 'prefs.md'), 'likes water');
      store.put('/prefs.md', 'likes juice (edited by the app)');
      await mounts.sync();
      expect(store.byPath('/prefs.md')?.content).toBe('likes juice (edited by the app)');
      expect(await readFile(path.join(notes, 'prefs.md'), 'utf8')).toBe('likes juice (edited by the app)');
      expect(mounts.stats.conflicts).toBe(1);

      await mounts.finalSync();
      await mounts.unmount();
      await expect(readFile(path.join(notes, 'todo.md'))).rejects.toThrow();
    } finally {
      await fake.close();
      await rm(root, { recursive: true, force: true });
    }
  });
});

/**
 * Demo: the fake of Anthropic's side with one scripted session, and the
 * Managed Agents connector serving it in a bubblewrap sandbox. Prints each
 * tool call as the worker answers it. Run as root on Linux with bwrap:
 *   npx vite-node scripts/demo-managed-agents.ts
 */
import { FakeAnthropic } from '../test/fakes/anthropic/fake-anthropic.js';
import { BwrapWorkerHost } from '../test/integration/managed-agents/bwrap-worker-host.js';
import { ManagedAgentsConnector } from '../src/managed-agents/connector.js';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const fake = new FakeAnthropic();
await fake.start();
const host = await BwrapWorkerHost.create();
const stateDir = await mkdtemp(path.join(os.tmpdir(), 'sr-ma-demo-'));
const connector = new ManagedAgentsConnector({
  config: { environmentId: fake.environmentId, environmentKey: fake.environmentKey, baseUrl: fake.url, maxSessions: 2, driver: 'bwrap', maxIdleMs: 500, memorySyncIntervalMs: 15_000 },
  host,
  stateDir,
  onServed: (sessionId, call) => {
    const text = call.preview.replace(/\n/g, '\\n');
    console.log(`  ${sessionId.slice(0, 12)}  ${call.name.padEnd(5)} ${call.isError ? 'ERROR' : 'ok   '} ${text.slice(0, 90)}`);
  },
});
console.log(`fake Anthropic at ${fake.url}, environment ${fake.environmentId}; worker ${connector.workerId}`);
const { session, work } = fake.createSession({
  script: async (a) => {
    await a.tool('bash', { command: 'uname -a; id; pwd' });
    await a.tool('write', { file_path: 'hello.py', content: 'print("hello from the sandbox")\n' });
    await a.tool('bash', { command: 'python3 hello.py' });
    await a.tool('edit', { file_path: 'hello.py', old_string: 'hello', new_string: 'goodbye' });
    await a.tool('read', { file_path: 'hello.py' });
    await a.tool('glob', { pattern: '**/*.py' });
    await a.tool('grep', { pattern: 'goodbye' });
    await a.tool('bash', { command: 'ls /home /root 2>&1; cat /etc/hostname 2>&1; env | grep -c ANTHROPIC_ || true' });
    a.message('All done.');
    a.endTurn();
  },
});
console.log(`session ${session.id} queued; tool calls served:`);
const running = connector.start();
while (fake.queue.get(work.id).state !== 'stopped') await new Promise((r) => setTimeout(r, 50));
console.log(`work item ${work.id} is ${fake.queue.get(work.id).state}; ${session.events.length} events in the session`);
await connector.shutdown();
await running.catch(() => undefined);
await host.close();
await fake.close();
await rm(stateDir, { recursive: true, force: true });

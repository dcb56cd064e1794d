/**
 * Demo: a fake of Anthropic's side (the test fake, on 127.0.0.1) with one
 * scripted session, and the real daemon — `sandbox-runner start` with
 * `controlPlane.enabled: false` and a `managedAgents:` section — serving it
 * as the environment worker, every tool in a bubblewrap sandbox. Prints each
 * tool call as the session sees its result, then what the audit log and
 * /metrics recorded. Needs Linux with bubblewrap and the built package:
 *   npm run demo:managed-agents
 */
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { FakeAnthropic } from '../test/fakes/anthropic/fake-anthropic.js';

const repo = path.resolve(import.meta.dirname, '..');
const cli = path.join(repo, 'dist', 'src', 'cli', 'main.js');

const fake = new FakeAnthropic();
await fake.start();
const root = await mkdtemp(path.join(os.tmpdir(), 'sr-ma-demo-'));
// Workspaces sit beside the state dir; each sandbox runs as its own uid and must be able to reach them.
await chmod(root, 0o711);
await writeFile(path.join(root, 'environment.key'), `${fake.environmentKey}\n`, { mode: 0o600 });
const configFile = path.join(root, 'runner.yaml');
await writeFile(
  configFile,
  stringify({
    stateDir: path.join(root, 'state'),
    logLevel: 'warn',
    controlPlane: { enabled: false },
    health: { port: 0 },
    sandbox: { workDir: path.join(root, 'work') },
    managedAgents: { environmentId: fake.environmentId, environmentKeyFile: 'environment.key', baseUrl: fake.url, maxIdleMs: 500 },
  }),
);

const show = (name: string, input: unknown, r: { text: string; isError: boolean }): void => {
  const args = JSON.stringify(input).slice(0, 60);
  console.log(`  ${name.padEnd(5)} ${args.padEnd(60)} ${r.isError ? 'ERROR' : 'ok   '} ${r.text.replace(/\n/g, '\\n').slice(0, 70)}`);
};
const { session, work } = fake.createSession({
  memoryStores: [{ memory_store_id: 'memstore_demo', name: 'Notes' }],
  script: async (a) => {
    const call = async (name: string, input: Record<string, unknown>): Promise<void> => show(name, input, await a.tool(name, input));
    await call('bash', { command: 'id -u; pwd; ls /mnt/memory; cat /etc/hostname' });
    await call('write', { file_path: 'hello.py', content: 'print("hello from the sandbox")\n' });
    await call('bash', { command: 'python3 hello.py' });
    await call('edit', { file_path: 'hello.py', old_string: 'hello', new_string: 'goodbye' });
    await call('read', { file_path: 'hello.py' });
    await call('glob', { pattern: '**/*.py' });
    await call('grep', { pattern: 'goodbye' });
    await call('write', { file_path: '/mnt/memory/notes/learned.md', content: 'the demo ran' });
    await call('read', { file_path: '../../etc/shadow' });
    await call('bash', { command: 'ls /root 2>&1; env | grep -c ANTHROPIC_ || true' });
    a.message('All done.');
    a.endTurn();
  },
});
fake.memoryStores.get('memstore_demo')!.put('/prefs.md', 'likes tea');

console.log(`fake Anthropic at ${fake.url}, environment ${fake.environmentId}`);
console.log(`runner: node dist/src/cli/main.js start --config ${configFile}`);
console.log(`session ${session.id} queued; tool calls served in bwrap sandboxes:`);
const runner = spawn(process.execPath, [cli, 'start', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
let logs = '';
runner.stdout.on('data', (d: Buffer) => (logs += d.toString()));
runner.stderr.on('data', (d: Buffer) => (logs += d.toString()));
const exited = new Promise<number | null>((resolve) => runner.once('exit', (code) => resolve(code)));
let failed = false;
void exited.then((code) => {
  if (fake.queue.get(work.id).state !== 'stopped') {
    failed = true;
    console.error(`the runner exited (${code}) before the session ended:\n${logs}`);
  }
});
while (fake.queue.get(work.id).state !== 'stopped' && !failed) await new Promise((r) => setTimeout(r, 50));

if (!failed) {
  console.log(`work item ${work.id} is stopped; ${session.events.length} events in the session`);
  console.log(`memory store after the final flush: ${JSON.stringify(fake.memoryStores.get('memstore_demo')!.byPath('/learned.md')?.content)} at /learned.md`);
  runner.kill('SIGTERM');
  console.log(`runner exited with ${await exited} after SIGTERM`);
  const auditDir = path.join(root, 'state', 'audit');
  const entries = (await Promise.all((await readdir(auditDir)).filter((f) => f.endsWith('.jsonl')).map((f) => readFile(path.join(auditDir, f), 'utf8'))))
    .join('')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; fields: { source?: string } });
  const ma = entries.filter((e) => e.fields.source === 'managed-agents');
  console.log(`audit log: ${entries.length} entries, ${ma.filter((e) => e.type === 'call.result').length} call results with source managed-agents`);
}
await rm(root, { recursive: true, force: true });
await fake.close();
process.exitCode = failed ? 1 : 0;

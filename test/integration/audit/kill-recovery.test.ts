import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../../src/audit/audit-log.js';
import { readAudit } from '../../../src/audit/read-audit.js';
import { verifyAudit } from '../../../src/audit/verify-audit.js';
import { makeKeys, makeTempDir } from '../../unit/audit/audit-fixtures.js';

const repo = join(import.meta.dirname, '../../..');
const viteNode = join(repo, 'node_modules/vite-node/vite-node.mjs');
const fixture = join(import.meta.dirname, 'fixtures/append-loop.ts');

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

/** Starts the appending child and resolves once it has written a few entries. */
async function startAppender(dir: string, keys: { signingKey: Uint8Array; publicKey: Uint8Array }): Promise<ChildProcess> {
  const child = spawn(process.execPath, [viteNode, fixture, dir, String(4 * 1024 * 1024)], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: {
      ...process.env,
      AUDIT_TEST_SIGNING_KEY: Buffer.from(keys.signingKey).toString('base64'),
      AUDIT_TEST_PUBLIC_KEY: Buffer.from(keys.publicKey).toString('base64'),
    },
  });
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let seen = '';
  for await (const chunk of child.stdout!) {
    seen += String(chunk);
    if (seen.includes('ready')) break;
  }
  return child;
}

/**
 * Kills the child with SIGKILL while its file is growing, i.e. inside a
 * write: two stat() calls that disagree on the size mean a write is under way.
 */
async function killMidWrite(child: ChildProcess, path: string): Promise<void> {
  let last = statSync(path).size;
  for (let i = 1; ; i += 1) {
    const size = statSync(path).size;
    if (size !== last) break;
    last = size;
    // This loop is synchronous (no event loop turns between stats), so it must
    // notice by itself a child that died: a zombie or a vanished /proc entry.
    if (i % 10_000 === 0 && !isRunning(child.pid!)) throw new Error('the appending child stopped before it could be killed; see its stderr above');
  }
  child.kill('SIGKILL');
  if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
}

function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('audit log after kill -9', () => {
  it('cuts the torn line, records it, and the chain verifies', async () => {
    const tmp = makeTempDir('audit-kill-');
    cleanups.push(tmp.remove);
    const dir = join(tmp.dir, 'audit');
    const keys = await makeKeys();
    const path = join(dir, 'audit-000001.jsonl');
    let tornRuns = 0;
    // A kill can land between two writes too (more often on a loaded machine,
    // where the child is descheduled between them): rounds until one tears a line.
    for (let round = 0; round < 10 && tornRuns === 0; round += 1) {
      const child = await startAppender(dir, keys);
      await killMidWrite(child, path);
      expect(child.signalCode).toBe('SIGKILL');

      const raw = readFileSync(path);
      const torn = raw.length - (raw.lastIndexOf(0x0a) + 1);
      if (torn > 0) tornRuns += 1;
      const log = await AuditLog.open({ dir, ...keys });
      const recovered = log.head;
      await log.close();

      const entries = [];
      for await (const e of readAudit(dir, { type: 'recovered' })) entries.push(e);
      const last = entries.at(-1)!;
      expect(last.seq).toBe(recovered.seq);
      expect(last.fields).toMatchObject({ bytesCut: torn, file: 'audit-000001.jsonl' });
      expect(readFileSync(path).subarray(-1)[0]).toBe(0x0a);
      const result = await verifyAudit(dir, keys.publicKey);
      expect(result).toMatchObject({ ok: true });
    }
    expect(tornRuns).toBe(1);
  });
});

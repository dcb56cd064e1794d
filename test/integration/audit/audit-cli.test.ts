import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../../src/audit/audit-log.js';
import { CLI } from '../../helpers/processes.js';
import { makeKeys, makeTempDir, writeSampleLog } from '../../unit/audit/audit-fixtures.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built `sandbox-runner audit ...` (dist/src/cli/main.js) as a child process and collects what it printed. */
async function cli(...args: string[]): Promise<Run> {
  const child = spawn(process.execPath, [CLI, 'audit', ...args], { env: { ...process.env, SANDBOX_RUNNER_STATE_DIR: '/nonexistent' } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += String(c)));
  child.stderr.on('data', (c: Buffer) => (stderr += String(c)));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

/** A state dir with identity.json and a sample log. */
async function stateDir(calls = 3, options: Parameters<typeof writeSampleLog>[2] = {}) {
  const tmp = makeTempDir('audit-cli-');
  cleanups.push(tmp.remove);
  const keys = await writeSampleLog(join(tmp.dir, 'audit'), calls, options);
  writeFileSync(join(tmp.dir, 'identity.json'), JSON.stringify({ runnerId: 'r-1', signingPublicKey: Buffer.from(keys.publicKey).toString('base64') }));
  return { dir: tmp.dir, keys, file: join(tmp.dir, 'audit', 'audit-000001.jsonl') };
}

describe('sandbox-runner audit (child process)', () => {
  it('verify passes a real log, and fails with exit 1 naming the first bad entry', async () => {
    const s = await stateDir();
    const ok = await cli('verify', '--state-dir', s.dir);
    expect(ok).toMatchObject({ code: 0, stderr: '' });
    expect(ok.stdout).toContain('audit log verified: 16 entries in 1 file(s), 2 signed checkpoint(s)');
    expect(ok.stdout).toContain('last signed entry: 15\n');

    const lines = readFileSync(s.file, 'utf8').split('\n');
    lines[3] = lines[3]!.replace('"bwrap"', '"bwrae"');
    writeFileSync(s.file, lines.join('\n'));
    const bad = await cli('verify', '--state-dir', s.dir);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain('audit log FAILED verification');
    expect(bad.stdout).toContain(`file:   ${s.file}`);
    expect(bad.stdout).toMatch(/line: +4\n +entry: +4\n +reason: the hash does not match/);
    expect(bad.stdout).toContain('bwrae');

    const json = await cli('verify', '--state-dir', s.dir, '--json');
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, line: 4, seq: 4 });
  });

  it('verify takes --public-key and refuses a malformed one with exit 2', async () => {
    const s = await stateDir();
    const other = await makeKeys();
    expect((await cli('verify', '--state-dir', s.dir, '--public-key', Buffer.from(s.keys.publicKey).toString('base64'))).code).toBe(0);
    const wrongKey = await cli('verify', '--state-dir', s.dir, '--public-key', Buffer.from(other.publicKey).toString('base64'));
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stdout).toContain('signature is not valid');
    const malformed = await cli('verify', '--state-dir', s.dir, '--public-key', 'abc');
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain('32 bytes');
    const missing = await cli('verify');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('cannot read /nonexistent/identity.json');
  });

  it('tail prints the newest entries, show one call, both as text or JSON', async () => {
    const s = await stateDir();
    const tail = await cli('tail', '-n', '3', '--state-dir', s.dir);
    expect(tail.code).toBe(0);
    const tailLines = tail.stdout.trimEnd().split('\n');
    expect(tailLines).toHaveLength(3);
    expect(tailLines[0]).toMatch(/ {2}#14 {2}call\.result {6}call=call-2 {2}durationMs=12 {2}status=completed$/);
    expect(tailLines[2]).toMatch(/#16 {2}checkpoint {7}signs #15 [0-9a-f]{16}… \(final\)$/);

    const show = await cli('show', 'call-1', '--state-dir', s.dir, '--json');
    expect(show.code).toBe(0);
    const entries = show.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(entries.map((e) => e.type)).toEqual(['call.received', 'credential.used', 'sandbox.started', 'call.result']);
    expect(entries[1]).toMatchObject({ callId: 'call-1', fields: { name: 'GITHUB_TOKEN' } });

    const none = await cli('show', 'nope', '--state-dir', s.dir);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no audit entries for call nope');
    expect((await cli('tail', '-n', 'many', '--state-dir', s.dir)).code).toBe(2);
  });

  it('export prints a time range and refuses a bad time with exit 2', async () => {
    const tmp = makeTempDir('audit-cli-');
    cleanups.push(tmp.remove);
    let t = Date.parse('2024-05-01T00:00:00Z');
    const log = await AuditLog.open({ dir: join(tmp.dir, 'audit'), ...(await makeKeys()), clock: () => t });
    for (let i = 0; i < 6; i += 1) {
      log.append({ type: 'call.received', callId: `c${i}`, tool: 'bash' });
      t += 3600_000;
    }
    await log.close();
    const out = await cli('export', '--state-dir', tmp.dir, '--since', '2024-05-01T02:00:00Z', '--until', '2024-05-01T04:00:00Z', '--json');
    expect(out.code).toBe(0);
    expect(out.stdout.trimEnd().split('\n').map((l) => JSON.parse(l).callId)).toEqual(['c2', 'c3']);
    const text = await cli('export', '--state-dir', tmp.dir, '--since', '2024-05-01T05:00:00Z');
    expect(text.stdout).toContain('2024-05-01T05:00:00.000Z  #6  call.received    call=c5  tool=bash');
    const bad = await cli('export', '--state-dir', tmp.dir, '--since', 'last tuesday');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('is not a time; use ISO 8601');
  });

  it('escapes request values in text output so they cannot fake a line', async () => {
    const tmp = makeTempDir('audit-cli-');
    cleanups.push(tmp.remove);
    const log = await AuditLog.open({ dir: join(tmp.dir, 'audit'), ...(await makeKeys()) });
    log.append({ type: 'call.refused', callId: 'c1', reason: 'bad\n2024-01-01T00:00:00.000Z  #99  call.result \u001b[2J' });
    await log.close();
    const out = await cli('show', 'c1', '--state-dir', tmp.dir);
    expect(out.stdout.trimEnd().split('\n')).toHaveLength(1);
    expect(out.stdout).toContain('reason="bad\\n2024-01-01T00:00:00.000Z  #99  call.result \\u001b[2J"');
  });

  it('tail -f prints entries as they are written', async () => {
    const s = await stateDir(1);
    const child = spawn(process.execPath, [CLI, 'audit', 'tail', '-n', '1', '-f', '--json', '--state-dir', s.dir]);
    cleanups.push(() => child.kill('SIGKILL'));
    const seen: string[] = [];
    let pending = '';
    const waitFor = (pred: (e: { type: string; callId?: string }) => boolean) =>
      new Promise<void>((resolve) => {
        const check = (): void => {
          if (seen.some((l) => pred(JSON.parse(l)))) {
            child.stdout.off('data', onData);
            resolve();
          }
        };
        const onData = (c: Buffer): void => {
          pending += String(c);
          const parts = pending.split('\n');
          pending = parts.pop()!;
          seen.push(...parts);
          check();
        };
        child.stdout.on('data', onData);
        check();
      });
    await waitFor((e) => e.type === 'checkpoint');
    const log = await AuditLog.open({ dir: join(s.dir, 'audit'), ...s.keys, maxFileBytes: 1200 });
    for (let i = 0; i < 5; i += 1) log.append({ type: 'call.received', callId: `later-${i}`, tool: 'bash' });
    await log.flush();
    await waitFor((e) => e.callId === 'later-4');
    await log.close();
    const types = seen.map((l) => JSON.parse(l) as { seq: number; callId?: string });
    expect(types.filter((e) => e.callId?.startsWith('later-')).map((e) => e.callId)).toEqual(['later-0', 'later-1', 'later-2', 'later-3', 'later-4']);
    const seqs = types.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    child.kill('SIGTERM');
    await once(child, 'exit');
  });
});

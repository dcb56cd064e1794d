import { chmod, cp, mkdtemp, readdir, readFile, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../helpers/processes.js';
import { Spine } from '../../helpers/spine.js';

// A real run: a real control plane, a real runner process with a small
// rotation size, several calls (one refused by local policy) and a session.
// Then the log it wrote is verified, reviewed and tampered with.
describe('the audit log of a real run', () => {
  let spine: Spine;
  let runnerId: string;
  let stateDir: string;
  const callIds: Record<string, string> = {};
  let heldCheckpoints: Array<{ seq: number; hash: string; signature: string; at: string }>;
  const copies: string[] = [];

  beforeAll(async () => {
    spine = await Spine.start();
    // bwrap refuses a sandbox work root below a folder other users cannot enter (mkdtemp makes 0700).
    await chmod(spine.dir, 0o711);
    ({ runnerId, stateDir } = await spine.pair());
    const runner = await spine.startRunner(runnerId, stateDir, {
      SANDBOX_RUNNER_AUDIT__MAX_FILE_BYTES: '2048',
      SANDBOX_RUNNER_AUDIT__CHECKPOINT_EVERY: '4',
      SANDBOX_RUNNER_POLICY__TOOLS__DENY: '["exec"]',
    });
    const call = async (key: string, body: Record<string, unknown>) => {
      const r = await spine.api.call(runnerId, body);
      expect(r.status).toBe(200);
      callIds[key] = r.body.id;
      return r.body;
    };
    expect((await call('js1', { name: 'javascript', input: { code: '1 + 1' } })).content).toBe('2');
    expect((await call('bash', { name: 'bash', input: { command: 'echo hi' } })).content).toBe('hi');
    expect(await call('refused', { name: 'exec', input: { argv: ['true'] } })).toMatchObject({ isError: true, content: expect.stringMatching(/denied by local policy/) });
    const open = await spine.api.request('POST', `/v1/runners/${runnerId}/sessions`, { driver: 'bwrap' });
    expect(open.status).toBe(201);
    callIds.session = open.body.sessionId;
    expect((await call('inSession', { name: 'bash', input: { command: 'echo in-session' }, sessionId: open.body.sessionId })).content).toBe('in-session');
    expect((await spine.api.request('DELETE', `/v1/sessions/${open.body.sessionId}`)).status).toBe(204);
    expect((await call('js2', { name: 'javascript', input: { code: '"last"' } })).content).toBe('last');
    expect(await runner.stop()).toBe(0);
    heldCheckpoints = (await spine.api.request('GET', `/v1/runners/${runnerId}/audit-checkpoints`)).body;
  });
  afterAll(async () => {
    await spine?.stop();
    for (const d of copies) await rm(d, { recursive: true, force: true });
  });

  /** A copy of the state dir's identity and audit log, to tamper with. */
  async function copy(): Promise<{ dir: string; audit: string; files: string[] }> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'audit-tamper-'));
    copies.push(dir);
    await cp(path.join(stateDir, 'identity.json'), path.join(dir, 'identity.json'));
    await cp(path.join(stateDir, 'audit'), path.join(dir, 'audit'), { recursive: true });
    const audit = path.join(dir, 'audit');
    const files = (await readdir(audit)).filter((f) => f.endsWith('.jsonl')).sort().map((f) => path.join(audit, f));
    return { dir, audit, files };
  }

  async function lines(file: string): Promise<string[]> {
    return (await readFile(file, 'utf8')).split('\n').slice(0, -1);
  }

  /** Cuts the last `n` whole entries of the log, across files when rotation split them (a file left empty is removed). */
  async function cutEntries(files: string[], n: number): Promise<void> {
    for (let i = files.length - 1; n > 0; i -= 1) {
      const ls = await lines(files[i]!);
      const keep = ls.slice(0, Math.max(0, ls.length - n));
      n -= ls.length - keep.length;
      if (keep.length) await writeFile(files[i]!, `${keep.join('\n')}\n`);
      else await unlink(files[i]!);
    }
  }

  async function verify(dir: string, ...extra: string[]) {
    const r = await runCli(['audit', 'verify', '--state-dir', dir, ...extra]);
    const json = await runCli(['audit', 'verify', '--state-dir', dir, '--json', ...extra]);
    expect(json.code).toBe(r.code);
    return { ...r, result: JSON.parse(json.stdout) };
  }

  it('verify passes on the log as the runner left it, rotated over several files', async () => {
    const files = (await readdir(path.join(stateDir, 'audit'))).filter((f) => f.endsWith('.jsonl'));
    expect(files.length).toBeGreaterThanOrEqual(3);
    const r = await verify(stateDir);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`audit log verified: \\d+ entries in ${files.length} file\\(s\\), \\d+ signed checkpoint\\(s\\)`));
    expect(r.result).toMatchObject({ ok: true, files: files.length, unsignedEntries: 0 });
  });

  it('the control plane holds the runner\'s signed checkpoints, the final one included, and verify accepts them', async () => {
    const r = await verify(stateDir);
    expect(heldCheckpoints.length).toBeGreaterThanOrEqual(3);
    // The last entry of the log is the final checkpoint; it signs the entry before it.
    expect(heldCheckpoints.at(-1)!.seq).toBe(r.result.lastSeq - 1);
    const held = path.join(await mkdtemp(path.join(os.tmpdir(), 'audit-held-')), 'checkpoints.json');
    copies.push(path.dirname(held));
    await writeFile(held, JSON.stringify(heldCheckpoints));
    expect((await verify(stateDir, '--checkpoints', held)).code).toBe(0);
  });

  it('show prints every entry of one call; tail -n 5 --json prints five parseable entries', async () => {
    const show = await runCli(['audit', 'show', callIds.bash!, '--state-dir', stateDir, '--json']);
    expect(show.code).toBe(0);
    const entries = show.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(entries.map((e) => e.type)).toEqual(['call.received', 'call.result']);
    expect(entries.every((e) => e.callId === callIds.bash)).toBe(true);
    expect(entries[1].fields).toMatchObject({ tool: 'bash', status: 'completed' });

    const refused = await runCli(['audit', 'show', callIds.refused!, '--state-dir', stateDir]);
    expect(refused.code).toBe(0);
    expect(refused.stdout).toMatch(/call\.result +call=\S+ .*status=failed/);

    const inSession = await runCli(['audit', 'show', callIds.inSession!, '--state-dir', stateDir, '--json']);
    expect(JSON.parse(inSession.stdout.split('\n')[0]!)).toMatchObject({ type: 'call.received', sessionId: callIds.session });

    const tail = await runCli(['audit', 'tail', '-n', '5', '--json', '--state-dir', stateDir]);
    expect(tail.code).toBe(0);
    const last = tail.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(last).toHaveLength(5);
    expect(last.map((e) => e.seq)).toEqual([...last.map((e) => e.seq)].sort((a, b) => a - b));
    expect(last.map((e) => e.type)).toContain('runner.stop');
    expect(last.at(-1)).toMatchObject({ type: 'checkpoint', fields: { final: true } });

    const text = await runCli(['audit', 'export', '--state-dir', stateDir]);
    expect(text.stdout).toMatch(/#\d+ +session\.open +session=\S+ +driver=bwrap/);
    expect(text.stdout).toMatch(/#\d+ +session\.close +session=\S+/);
    expect(text.stdout).toMatch(/#1 +runner\.paired /);
    expect(text.stdout).toMatch(/#\d+ +runner\.start /);
  });

  it('a flipped byte fails verification naming the entry', async () => {
    const c = await copy();
    // The bash call's result, wherever rotation put it; one letter of its status flipped.
    let file = '';
    let ls: string[] = [];
    let i = -1;
    for (const f of c.files) {
      ls = await lines(f);
      i = ls.findIndex((l) => l.includes(`"callId":"${callIds.bash}"`) && l.includes('"call.result"'));
      if (i >= 0) {
        file = f;
        break;
      }
    }
    const seq = JSON.parse(ls[i]!).seq as number;
    ls[i] = ls[i]!.replace('"completed"', '"completeD"');
    await writeFile(file, `${ls.join('\n')}\n`);
    const r = await verify(c.dir);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('audit log FAILED verification');
    expect(r.stdout).toContain(`file:   ${file}`);
    expect(r.result).toMatchObject({ ok: false, file, line: i + 1, seq });
    expect(r.result.reason).toMatch(/hash does not match/);
  });

  it('a deleted entry fails verification naming the entry', async () => {
    const c = await copy();
    const file = c.files[1]!;
    const ls = await lines(file);
    const gone = JSON.parse(ls[1]!).seq as number;
    ls.splice(1, 1);
    await writeFile(file, `${ls.join('\n')}\n`);
    const r = await verify(c.dir);
    expect(r.code).toBe(1);
    expect(r.result).toMatchObject({ ok: false, file, line: 2, seq: gone + 1 });
    expect(r.result.reason).toContain(`entries ${gone}..${gone} were deleted`);
  });

  it('two entries swapped fail verification naming the entry', async () => {
    const c = await copy();
    const file = c.files[0]!;
    const ls = await lines(file);
    const first = JSON.parse(ls[1]!).seq as number;
    [ls[1], ls[2]] = [ls[2]!, ls[1]!];
    await writeFile(file, `${ls.join('\n')}\n`);
    const r = await verify(c.dir);
    expect(r.code).toBe(1);
    expect(r.result).toMatchObject({ ok: false, file, line: 2, seq: first + 1 });
    expect(r.stdout).toMatch(/reason: expected entry \d+ here but found \d+/);
  });

  it('a file cut mid-entry fails verification; cut at an entry boundary it fails against the control plane\'s checkpoints', async () => {
    const c = await copy();
    const file = c.files.at(-1)!;
    const raw = await readFile(file);
    await truncate(file, raw.length - 10);
    const torn = await verify(c.dir);
    expect(torn.code).toBe(1);
    expect(torn.result).toMatchObject({ ok: false, file });
    expect(torn.result.reason).toMatch(/incomplete/);

    // Whole entries cut from the end leave a shorter log that still chains: only a copy held elsewhere tells.
    // The final checkpoint and the entry it signs, which the control plane holds a checkpoint for.
    await writeFile(file, raw);
    await cutEntries(c.files, 2);
    const short = await verify(c.dir);
    const held = path.join(c.dir, 'held.json');
    await writeFile(held, JSON.stringify(heldCheckpoints));
    const against = await verify(c.dir, '--checkpoints', held);
    expect(short.code).toBe(0);
    expect(against.code).toBe(1);
    expect(against.result.reason).toMatch(/but a signed checkpoint names entry \d+: entries were cut from the end/);
  });

  it('a removed rotated file fails verification naming the missing file', async () => {
    const c = await copy();
    const gone = c.files[1]!;
    await unlink(gone);
    const r = await verify(c.dir);
    expect(r.code).toBe(1);
    expect(r.result).toMatchObject({ ok: false, file: gone, line: 0 });
    expect(r.stdout).toContain('missing from the rotation sequence');
  });
});

import { appendFile, chmod, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, waitUntil } from '../../helpers/processes.js';
import { Spine } from '../../helpers/spine.js';

// A real runner process killed with SIGKILL while calls stream in: the next
// start finds how the log was left, cuts a torn last line, records it in a
// `recovered` entry, and the chain verifies.
describe('the audit log after kill -9 of a runner', () => {
  let spine: Spine;

  beforeAll(async () => {
    spine = await Spine.start();
    await chmod(spine.dir, 0o711);
  });
  afterAll(async () => {
    await spine?.stop();
  });

  async function lastFile(auditDir: string): Promise<string> {
    const files = (await readdir(auditDir)).filter((f) => f.endsWith('.jsonl')).sort();
    return path.join(auditDir, files.at(-1)!);
  }

  it('is cut, recorded with a recovered entry, and verifies at the next start', async () => {
    const { runnerId, stateDir } = await spine.pair('killed');
    const auditDir = path.join(stateDir, 'audit');
    const runner = await spine.startRunner(runnerId, stateDir);

    // Calls in a loop from several clients, so the runner is writing when it is killed.
    let stop = false;
    let done = 0;
    const loops = Array.from({ length: 4 }, async (_, n) => {
      for (let i = 0; !stop; i += 1) {
        await spine.api.call(runnerId, { name: 'javascript', input: { code: `"loop ${n} call ${i}"` } }).catch(() => undefined);
        done += 1;
      }
    });
    await waitUntil(async () => done >= 20, 60_000, '20 calls done').catch((err: Error) => {
      throw new Error(`${err.message} (${done} done); runner output:\n${runner.output().slice(-5000)}`);
    });
    const before = await stat(await lastFile(auditDir));
    await runner.kill('SIGKILL');
    expect(runner.child.signalCode).toBe('SIGKILL');
    stop = true;
    await spine.waitConnected(runnerId, false);
    expect(before.size).toBeGreaterThan(0);

    // A kill between two writes leaves whole lines (small entries are one write each);
    // what a kill inside a write or a power loss leaves is added here: half of a next line.
    const file = await lastFile(auditDir);
    let raw = await readFile(file);
    let torn = raw.length - (raw.lastIndexOf(0x0a) + 1);
    if (torn === 0) {
      const lastLine = raw.subarray(raw.lastIndexOf(0x0a, raw.length - 2) + 1).toString('utf8');
      await appendFile(file, lastLine.slice(0, Math.floor(lastLine.length / 2)));
      raw = await readFile(file);
      torn = raw.length - (raw.lastIndexOf(0x0a) + 1);
    }
    expect(torn).toBeGreaterThan(0);
    const broken = await runCli(['audit', 'verify', '--state-dir', stateDir, '--json']);
    expect(broken.code).toBe(1);
    expect(JSON.parse(broken.stdout).reason).toMatch(/incomplete/);

    const again = await spine.startRunner(runnerId, stateDir);
    // Calls the control plane held while the runner was away are answered now.
    await Promise.all(loops);
    const r = await spine.api.call(runnerId, { name: 'javascript', input: { code: '"after the crash"' } });
    expect(r.body.content).toBe('after the crash');
    expect(await again.stop()).toBe(0);

    const verify = await runCli(['audit', 'verify', '--state-dir', stateDir]);
    expect(verify.code, verify.stdout).toBe(0);
    const entries = (await runCli(['audit', 'export', '--state-dir', stateDir, '--json'])).stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    const recovered = entries.filter((e) => e.type === 'recovered');
    expect(recovered).toHaveLength(1);
    expect(recovered[0].fields).toMatchObject({ bytesCut: torn, file: path.basename(file), reason: 'torn last line' });
    // The recovery is recorded before the second run's start.
    const starts = entries.filter((e) => e.type === 'runner.start').map((e) => e.seq);
    expect(starts).toHaveLength(2);
    expect(recovered[0].seq).toBeLessThan(starts[1]);
    expect(recovered[0].seq).toBeGreaterThan(starts[0]);
  }, 180_000);
});

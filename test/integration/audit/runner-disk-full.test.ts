import { execFileSync } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil, type RunningProcess } from '../../helpers/processes.js';
import { Spine } from '../../helpers/spine.js';

// A real runner whose audit directory is a tiny tmpfs (the tests run as root):
// once the log cannot be written, the runner takes no calls and says so in
// its answers, its log, /readyz and /metrics.
describe('a full audit disk stops a real runner from taking calls', () => {
  let spine: Spine;
  let auditDir: string | undefined;
  let runner: RunningProcess;
  let runnerId: string;

  beforeAll(async () => {
    spine = await Spine.start();
    await chmod(spine.dir, 0o711);
    const paired = await spine.pair('full');
    runnerId = paired.runnerId;
    const dir = path.join(paired.stateDir, 'audit');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', dir]);
    auditDir = dir;
    runner = await spine.startRunner(runnerId, paired.stateDir);
  });
  afterAll(async () => {
    await runner?.stop();
    if (auditDir) execFileSync('umount', ['-l', auditDir]);
    await spine?.stop();
  });

  it('refuses calls, answers 503 on /readyz naming the audit log, shows audit_healthy 0, and logs why', async () => {
    const url = (await runner.waitForOutput(/"url":"http:\/\/127\.0\.0\.1:\d+"/)).match(/http:\/\/[^"]+/)![0];
    // Ready once the runner itself has finished its handshake (the control plane lists it a moment earlier).
    await waitUntil(async () => (await fetch(`${url}/readyz`)).status === 200, 20_000, '/readyz 200');
    expect((await spine.api.call(runnerId, { name: 'javascript', input: { code: '"before"' } })).body.content).toBe('before');

    // Fill what is left of the file system.
    await writeFile(path.join(auditDir!, 'filler'), Buffer.alloc(64 * 1024)).catch((err: NodeJS.ErrnoException) => expect(err.code).toBe('ENOSPC'));

    // The room left in the log file's last page goes first (tmpfs allocates whole pages); then a write fails.
    let refused: { body: any } | undefined;
    for (let i = 0; i < 50 && !refused; i += 1) {
      const r = await spine.api.call(runnerId, { name: 'javascript', input: { code: `"call ${i}"` } });
      if (r.body.isError) refused = r;
      else expect(r.body.content).toBe(`call ${i}`);
    }
    expect(refused).toBeDefined();
    // Refused before it ran: at the call's start, or by the check right after its first audit entry (the one that found the disk full).
    expect(JSON.stringify(refused!.body)).toMatch(/(the runner takes no calls now|the runner did not run the call): the audit log cannot be written \(.*ENOSPC/);

    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).toContain('the audit log cannot be written; calls are refused');
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/^sandbox_runner_audit_healthy 0$/m);
    await waitUntil(async () => /"level":60.*the audit log cannot be written: the runner takes no calls until it can \(fail closed\)/.test(runner.output()), 10_000, 'the fatal log line');
    expect(runner.child.exitCode).toBeNull();
    // Refused from then on, not once.
    const again = await spine.api.call(runnerId, { name: 'javascript', input: { code: '"again"' } });
    expect(again.body).toMatchObject({ isError: true, content: expect.stringMatching(/audit log cannot be written/) });
  });
});

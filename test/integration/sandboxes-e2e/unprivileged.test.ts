import { chown, mkdir, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Spine } from '../../helpers/spine.js';
import { startCli, type RunningProcess } from '../../helpers/processes.js';
import { text, type CallView } from './harness.js';

const NOBODY = { uid: 65534, gid: 65534 };

/** Changes the owner of a folder and everything in it. */
async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await chown(dir, uid, gid);
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await chownTree(p, uid, gid);
    else await chown(p, uid, gid);
  }
}

// The daemon as a platform team may run it: a dedicated user, not root (a
// systemd unit with User=). No cgroups to write and no mounts: bwrap makes its
// namespaces as that user and limits fall back to rlimits, which it says at start.
describe('the runner as an unprivileged user', () => {
  let spine: Spine;
  let runnerId: string;
  let runner: RunningProcess;

  const call = async (name: string, input: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<CallView> => {
    const r = await spine.api.call(runnerId, { name, input, ...extra });
    if (r.status !== 200) throw new Error(`call ${name}: HTTP ${r.status} ${r.text}`);
    return r.body as CallView;
  };

  beforeAll(async () => {
    spine = await Spine.start();
    await import('node:fs/promises').then((fs) => fs.chmod(spine.dir, 0o711));
    const paired = await spine.pair();
    runnerId = paired.runnerId;
    // Paired by root here; the state dir then belongs to the user who runs the daemon.
    await chownTree(paired.stateDir, NOBODY.uid, NOBODY.gid);
    await mkdir(`${paired.stateDir}-work`, { mode: 0o711 });
    await chown(`${paired.stateDir}-work`, NOBODY.uid, NOBODY.gid);
    runner = startCli(['start', '--state-dir', paired.stateDir], { SANDBOX_RUNNER_HEALTH__PORT: '0', HOME: paired.stateDir }, NOBODY);
    spine.runners.push(runner);
    await spine.waitConnected(runnerId, true);
    await runner.waitForOutput(/connected to the control plane/);
  });

  afterAll(async () => {
    await spine?.stop();
  });

  it('runs as that user and warns at start what it cannot do without root', async () => {
    const status = await readFile(`/proc/${runner.child.pid}/status`, 'utf8');
    expect(status).toMatch(/^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
    const warnings = runner
      .output()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { level: number; msg: string; fix?: string })
      .filter((l) => l.level === 40);
    expect(warnings.find((w) => w.msg.startsWith('sandbox driver bwrap: limits fall back to rlimits (the runner is not root)'))).toBeDefined();
    // Docker's socket is root's: the warning names the group, not a stopped engine.
    expect(warnings.find((w) => w.msg.startsWith('sandbox driver docker is unavailable'))?.fix).toMatch(/docker group/);
  });

  it('runs exec and bash in fresh bwrap sandboxes, and javascript in isolates', async () => {
    const exec = await call('exec', { argv: ['/bin/sh', '-c', 'echo made-by-$(id -u); touch /usr/x 2>&1 || true'] });
    expect(exec.status).toBe('completed');
    expect(text(exec.content)).toContain('made-by-');
    expect(text(exec.content)).toMatch(/Read-only file system|Permission denied/);
    const bash = await call('bash', { command: 'cd /tmp && echo from-bash > f && cat f' });
    expect(text(bash.content)).toContain('from-bash');
    const js = await call('javascript', { code: '[1, 2, 3].map((x) => x * 7).join(",")' });
    expect(text(js.content)).toContain('7,14,21');
  });

  it('keeps a session across calls and removes its workspace at close', async () => {
    const r = await spine.api.request('POST', `/v1/runners/${runnerId}/sessions`, {});
    expect(r.status).toBe(201);
    const sessionId = r.body.sessionId as string;
    await call('bash', { command: 'cd /workspace && export KEPT=yes && echo data > kept.txt' }, { sessionId });
    const again = await call('bash', { command: 'echo $KEPT $(cat kept.txt) $PWD' }, { sessionId });
    expect(text(again.content)).toContain('yes data /workspace');
    expect((await spine.api.request('DELETE', `/v1/sessions/${sessionId}`)).status).toBe(204);
  });

  it('a memory balloon is stopped by RLIMIT_AS and the runner keeps serving', async () => {
    const opened = await spine.api.request('POST', `/v1/runners/${runnerId}/sessions`, { limits: { memoryBytes: 64 * 1024 * 1024 } });
    expect(opened.status).toBe(201);
    const sessionId = opened.body.sessionId as string;
    const r = await call('exec', { argv: ['/usr/bin/python3', '-c', 'b = []\nwhile True: b.append(b"x" * (8 << 20))'] }, { sessionId });
    expect(r.isError).toBe(true);
    expect(text(r.content)).toMatch(/MemoryError/);
    await spine.api.request('DELETE', `/v1/sessions/${sessionId}`);
    const ok = await call('exec', { argv: ['/bin/echo', 'still-serving'] });
    expect(text(ok.content)).toContain('still-serving');
  });

  it('leaves its files owned by that user only', async () => {
    const dirs = await readdir(`${spine.dir}/runner`);
    for (const name of dirs) expect((await stat(path.join(spine.dir, 'runner', name))).uid).toBe(NOBODY.uid);
  });
});

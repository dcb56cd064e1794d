import { chmod, readdir, readFile, readlink, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BwrapDriver } from '../../../src/sandbox/bwrap/bwrap-driver.js';
import type { BwrapSandbox } from '../../../src/sandbox/bwrap/bwrap-sandbox.js';
import { IMAGES_DIR, captureLogger, sandboxId, spec, tempDir } from './helpers.js';

// Each hardening point of issue 3 for bwrap, observed from inside a real sandbox.
describe('bwrap sandbox hardening', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let driver: BwrapDriver;
  let sb: BwrapSandbox;
  let stateDir: string;

  beforeAll(async () => {
    work = await tempDir('sr-bwrap-hard-');
    stateDir = path.join(work.dir, 'runner-state');
    await mkdir(stateDir, { mode: 0o700 });
    await writeFile(path.join(stateDir, 'identity.json'), '{"secret":"runner-private-key"}', { mode: 0o600 });
    driver = new BwrapDriver({ imagesDir: IMAGES_DIR, workRoot: path.join(work.dir, 'sandboxes'), cgroupParent: `sandbox-runner-test-${process.pid}-h` });
    sb = (await driver.create(spec(sandboxId('hard'), { env: { GIVEN: 'yes', PATH: '/usr/bin:/bin' } }))) as BwrapSandbox;
  });

  afterAll(async () => {
    await sb?.dispose();
    await driver?.cleanupOrphans({ parentToo: true });
    await work?.remove();
  });

  const sh = async (script: string) => {
    const r = await sb.run({ argv: ['/bin/sh', '-c', script] });
    return { ...r, out: r.stdout.toString().trim(), err: r.stderr.toString().trim() };
  };

  it('probe reports bwrap usable with cgroup limits and the built image', async () => {
    const status = await driver.probe();
    expect(status.available).toBe(true);
    expect(status.message).toMatch(/limits by cgroups-v[12]/);
    expect(status.message).toContain('base image built');
  });

  it('unshares every namespace: user, pid, net, ipc, uts, cgroup, mnt', async () => {
    const kinds = ['user', 'pid', 'net', 'ipc', 'uts', 'cgroup', 'mnt'];
    const r = await sh(kinds.map((k) => `readlink /proc/self/ns/${k}`).join('; '));
    const inside = r.out.split('\n');
    for (const [i, k] of kinds.entries()) {
      expect(inside[i]).not.toBe(await readlink(`/proc/self/ns/${k}`));
    }
  });

  it('has its own pid namespace: the shell is a low pid and only sandbox processes are visible', async () => {
    const r = await sh('echo $$; ps -e -o comm=');
    const [pid, ...procs] = r.out.split('\n');
    expect(Number(pid)).toBeLessThanOrEqual(3);
    expect(procs.length).toBeLessThanOrEqual(4);
    expect(procs).not.toContain('node');
  });

  it('has its own hostname', async () => {
    expect((await sh('hostname')).out).toBe('sandbox');
  });

  it('has no network interface but lo', async () => {
    const r = await sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
    expect(r.out.split('\n')).toEqual(['lo']);
    const curl = await sh('curl -sS --max-time 5 http://1.1.1.1/ 2>&1; echo rc=$?');
    expect(curl.out).toMatch(/rc=[1-9]/);
  });

  it('holds no capabilities, and no_new_privs is set', async () => {
    const r = await sh('grep -E "^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)" /proc/self/status');
    expect(r.out).toMatch(/CapEff:\s+0000000000000000/);
    expect(r.out).toMatch(/CapPrm:\s+0000000000000000/);
    expect(r.out).toMatch(/CapBnd:\s+0000000000000000/);
    expect(r.out).toMatch(/NoNewPrivs:\s+1/);
  });

  it('cannot make a nested user namespace', async () => {
    const r = await sh('unshare --user true 2>&1; echo rc=$?');
    expect(r.out).toMatch(/rc=[1-9]/);
  });

  it('runs as uid 1000 inside and as an unprivileged uid on the host', async () => {
    expect((await sh('id -u; id -g')).out).toBe('1000\n1000');
    expect(sb.hostUid).toBeGreaterThan(65535);
  });

  it('cannot write to / or the image', async () => {
    const r = await sh('touch /x 2>&1; touch /usr/x 2>&1; touch /var/tmp/x 2>&1; echo done');
    expect(r.out.match(/Read-only file system/g)?.length).toBe(3);
  });

  it('has a writable private /workspace and /tmp', async () => {
    const r = await sh('echo a > /workspace/a && echo b > /tmp/b && cat /workspace/a /tmp/b && stat -c %U /workspace');
    expect(r.out).toBe('a\nb\nsandbox');
    expect(await readdir(sb.workspaceDir)).toContain('a');
  });

  it("cannot see the host's /root or the runner's state dir", async () => {
    const hostRoot = await readdir('/root');
    const r = await sh(`ls -A /root 2>&1; cat ${path.join(stateDir, 'identity.json')} 2>&1; ls ${work.dir} 2>&1; echo end`);
    for (const name of hostRoot) expect(r.out.split('\n')).not.toContain(name);
    expect(r.out).not.toContain('runner-private-key');
    expect(r.out).toContain('No such file or directory');
  });

  it('holds only the environment it was given', async () => {
    const r = await sb.run({ argv: ['/usr/bin/env'], env: { PER_RUN: '1' } });
    const names = r.stdout.toString().trim().split('\n').map((l) => l.split('=')[0]);
    // bwrap sets PWD after --chdir; nothing else comes from the runner.
    expect(names.sort()).toEqual(['GIVEN', 'PATH', 'PER_RUN', 'PWD']);
  });

  it("cannot see another sandbox's workspace", async () => {
    const other = await driver.create(spec(sandboxId('other')));
    try {
      await other.run({ argv: ['/bin/sh', '-c', 'echo secret > /workspace/other-file'] });
      const r = await sh(`ls /workspace; cat ${path.join(other.workspaceDir, 'other-file')} 2>&1; echo end`);
      expect(r.out).not.toContain('secret');
      expect(r.out.split('\n')).not.toContain('other-file');
    } finally {
      await other.dispose();
    }
  });

  it('places injected files, readable inside and removed at dispose', async () => {
    const s = await driver.create(
      spec(sandboxId('files'), {
        files: [
          { path: '/workspace/.config/token', content: Buffer.from('tok-1'), mode: 0o600 },
          { path: '/run-secrets/key', content: Buffer.from('key-2'), mode: 0o400 },
        ],
      }),
    );
    const r = await s.run({ argv: ['/bin/sh', '-c', 'cat /workspace/.config/token /run-secrets/key'] });
    expect(r.stdout.toString()).toBe('tok-1key-2');
    await s.dispose();
    await expect(readdir(s.workspaceDir)).rejects.toThrow(/ENOENT/);
  });

  it('binds host folders read-only or read-write under /mnt, and refuses one over a system folder', async () => {
    const ro = path.join(work.dir, 'store-ro');
    const rw = path.join(work.dir, 'store-rw');
    await mkdir(ro, { mode: 0o755 });
    await mkdir(rw, { mode: 0o777 });
    await chmod(rw, 0o777);
    await writeFile(path.join(ro, 'note.md'), 'remember\n', { mode: 0o644 });
    const mounts = [
      { hostPath: ro, path: '/mnt/memory/ro', readOnly: true },
      { hostPath: rw, path: '/mnt/memory/rw', readOnly: false },
    ];
    const s = await driver.create({ ...spec(sandboxId('mnt')), mounts } as Parameters<BwrapDriver['create']>[0]);
    try {
      const r = await s.run({ argv: ['/bin/sh', '-c', 'cat /mnt/memory/ro/note.md; touch /mnt/memory/ro/x 2>&1; echo saved > /mnt/memory/rw/new.md; echo ok'] });
      expect(r.stdout.toString()).toMatch(/^remember\n.*Read-only file system\nok\n$/s);
      expect(await readFile(path.join(rw, 'new.md'), 'utf8')).toBe('saved\n');
    } finally {
      await s.dispose();
    }
    const bad = { ...spec(sandboxId('mnt')), mounts: [{ hostPath: ro, path: '/usr/local', readOnly: true }] };
    await expect(driver.create(bad as Parameters<BwrapDriver['create']>[0])).rejects.toThrow(/would cover \/usr; mount under \/mnt instead/);
  });

  it('falls back to a read-only view of the host /usr with a warning when the image is not built', async () => {
    const { logger, lines } = captureLogger();
    const d = new BwrapDriver({ imagesDir: IMAGES_DIR, workRoot: path.join(work.dir, 'fallback'), logger, cgroupParent: `sandbox-runner-test-${process.pid}-f` });
    const s = await d.create(spec(sandboxId('fb'), { image: 'not-built' }));
    try {
      const r = await s.run({ argv: ['/bin/sh', '-c', 'id -un; ls /; touch /usr/x 2>&1; cat /etc/passwd | wc -l'] });
      const out = r.stdout.toString();
      expect(out).toContain('sandbox');
      expect(out).toContain('Read-only file system');
      expect(out.split('\n')).not.toContain('root');
      const warn = lines.find((l) => l.level === 40);
      expect(String(warn?.msg)).toMatch(/not built.*host's \/usr.*images build not-built/);
    } finally {
      await s.dispose();
      await d.cleanupOrphans({ parentToo: true });
    }
  });
});

import { execa } from 'execa';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerDriver } from '../../../src/sandbox/docker/docker-driver.js';
import type { DockerSandbox } from '../../../src/sandbox/docker/docker-sandbox.js';
import { sandboxId, spec, tempDir } from './helpers.js';

// What a hostile command could reach past the hardening flags checked in
// docker.test.ts: the engine's own files for the container, the host uid the
// container runs as, what two live sandboxes share. From inside real
// containers started by the driver, the runner as root.
describe('docker containment', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let driver: DockerDriver;
  let a: DockerSandbox;
  let b: DockerSandbox;
  const owner = `test-dc-${process.pid}`;

  beforeAll(async () => {
    work = await tempDir('sr-docker-cont-');
    driver = new DockerDriver({ workRoot: path.join(work.dir, 'sandboxes'), owner });
    const env = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/workspace', SECRET_TOKEN: 'sk-dc-4471' };
    a = (await driver.create(spec(sandboxId('dca'), { env }))) as DockerSandbox;
    b = (await driver.create(spec(sandboxId('dcb')))) as DockerSandbox;
  });

  afterAll(async () => {
    await a?.dispose();
    await b?.dispose();
    await driver?.cleanupOrphans();
    await work?.remove();
  });

  const sh = async (sb: DockerSandbox, script: string) => {
    const r = await sb.run({ argv: ['/bin/bash', '-c', script] });
    return { ...r, out: r.stdout.toString().trim(), err: r.stderr.toString().trim() };
  };

  it("keeps nothing in the engine's logs: PID 1's stdout is writable from inside and would be an unbounded host file holding secrets", async () => {
    const r = await sh(a, 'echo "LOGGED $SECRET_TOKEN" > /proc/1/fd/1 && head -c 1048576 /dev/zero > /proc/1/fd/2 && echo wrote');
    expect(r.out).toBe('wrote');
    const [c] = JSON.parse((await execa('docker', ['inspect', a.containerId])).stdout) as Array<{ LogPath: string; HostConfig: { LogConfig: { Type: string } } }>;
    expect(c!.HostConfig.LogConfig.Type).toBe('none');
    expect(c!.LogPath).toBe('');
    const logs = await execa('docker', ['logs', a.containerId], { reject: false });
    expect(`${logs.stdout}${logs.stderr}`).not.toContain('sk-dc-4471');
  });

  it('runs each sandbox as a host uid of its own, no host account, owning its workspace', async () => {
    const [ua, ub] = await Promise.all([sh(a, 'id -u; id -g'), sh(b, 'id -u; id -g')]);
    const [uidA, gidA] = ua.out.split('\n').map(Number);
    const [uidB] = ub.out.split('\n').map(Number);
    expect(gidA).toBe(uidA);
    expect(uidA).not.toBe(uidB);
    // The engine does not remap users: the uid inside is the uid on the host.
    const pid = Number((await execa('docker', ['inspect', '--format', '{{.State.Pid}}', a.containerId])).stdout.trim());
    expect((await readFile(`/proc/${pid}/status`, 'utf8')).match(/^Uid:\s+(\d+)/m)?.[1]).toBe(String(uidA));
    for (const uid of [uidA, uidB]) {
      expect(uid).toBeGreaterThan(65535);
      expect((await execa('getent', ['passwd', String(uid)], { reject: false })).exitCode).toBe(2);
    }
    expect((await stat(a.workspaceDir)).uid).toBe(uidA);
    expect((await stat(b.workspaceDir)).uid).toBe(uidB);
  });

  it("one sandbox using up a per-uid kernel budget (inotify instances) leaves another's intact", async () => {
    const hog = await a.spawn({
      argv: ['python3', '-c', "import ctypes, os, time\nlibc = ctypes.CDLL(None, use_errno=True)\nn = 0\nwhile libc.inotify_init() >= 0: n += 1\nprint('held', n, os.strerror(ctypes.get_errno()), flush=True)\ntime.sleep(60)"],
    });
    try {
      const held = await new Promise<string>((resolve) => {
        let acc = '';
        hog.stdout.on('data', (c: Buffer) => {
          acc += c.toString();
          if (acc.includes('\n')) resolve(acc.trim());
        });
      });
      expect(held).toMatch(/^held \d+ Too many open files$/);
      const other = await b.run({ argv: ['python3', '-c', 'import ctypes; print(ctypes.CDLL(None).inotify_init() >= 0)'] });
      expect(other.stdout.toString()).toBe('True\n');
    } finally {
      hog.kill();
      await hog.exited;
    }
  });

  it("a runner killed mid-call leaves neither the container nor the workspace's files once the next one cleans up", async () => {
    const workRoot = path.join(work.dir, 'killed');
    const killed = new DockerDriver({ workRoot, owner: `${owner}-k` });
    // Never disposed: what a SIGKILLed runner leaves.
    const left = (await killed.create(spec(sandboxId('dck')))) as DockerSandbox;
    expect((await sh(left, 'echo "token sk-dc-9913" > /workspace/notes; echo ok')).out).toBe('ok');
    const next = new DockerDriver({ workRoot, owner: `${owner}-k` });
    expect(await next.cleanupOrphans()).toEqual([left.containerId]);
    expect((await execa('docker', ['ps', '-aq', '--filter', `id=${left.containerId}`])).stdout).toBe('');
    expect(await readFile('/proc/self/mounts', 'utf8')).not.toContain(left.workspaceDir);
    await expect(stat(path.dirname(left.workspaceDir))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

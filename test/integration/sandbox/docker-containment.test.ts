import { execa } from 'execa';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerDriver } from '../../../src/sandbox/docker/docker-driver.js';
import type { DockerSandbox } from '../../../src/sandbox/docker/docker-sandbox.js';
import { editorTool } from '../../../src/tools/editor/index.js';
import { callTool, makeToolContext, outcomeText } from '../../helpers/tool-context.js';
import { hostProcessesHolding, sandboxId, spec, tempDir } from './helpers.js';

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

  it('may write only to size-capped tmpfs mounts (and the message-queue fs), all counted against its memory', async () => {
    // Directories only: the engine masks /proc/keys and /proc/timer_list with /dev/null, writable and writing nowhere.
    const r = await sh(a, 'while read -r dev dir type opts rest; do [ -d "$dir" ] && [ -w "$dir" ] && echo "$dir $type $opts"; done < /proc/mounts; stat -c "%t,%T" /proc/keys /proc/timer_list >&2');
    const rows = r.out.split('\n').map((l) => l.split(' '));
    expect(rows.map(([dir]) => dir).sort()).toEqual(['/dev/mqueue', '/dev/shm', '/tmp', '/workspace']);
    expect(r.err).toBe('1,3\n1,3');
    for (const [dir, type, opts] of rows) {
      if (dir === '/dev/mqueue') expect(type).toBe('mqueue');
      else expect({ dir, type, size: /(^|,)size=\d+k?(,|$)/.test(opts!) }).toEqual({ dir, type: 'tmpfs', size: true });
    }
    // /tmp is at most the memory limit; tmpfs pages count against the container's memory.
    const tmp = rows.find(([dir]) => dir === '/tmp')![2]!.match(/size=(\d+)k/)![1]!;
    expect(Number(tmp) * 1024).toBeLessThanOrEqual(a.limits.memoryBytes);
    // /dev/shm is the engine's fixed 64 MiB, above this sandbox's 40 MiB: its pages count against memory all the same.
    const small = await driver.create(spec(sandboxId('dcs'), { limits: { memoryBytes: 40 * 1024 * 1024 } }));
    try {
      const fill = await small.run({ argv: ['/bin/sh', '-c', 'head -c 62914560 /dev/zero > /dev/shm/fill; echo filled'] });
      expect({ ended: fill.ended, out: fill.stdout.toString() }).toEqual({ ended: 'memory', out: '' });
    } finally {
      await small.dispose();
    }
  });

  it('cannot raise its own limits or reach kernel knobs: /proc/sys, /sys, the cgroup files, sysrq and kcore', async () => {
    const r = await sh(
      a,
      [
        'for f in /proc/sys/kernel/hostname /proc/sysrq-trigger /sys/kernel/uevent_helper /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; do',
        '  if echo 999999999 > "$f" 2>/dev/null; then echo "WROTE $f"; fi',
        'done',
        'head -c 16 /proc/kcore 2>/dev/null | wc -c',
        'ls /dev | tr "\\n" " "',
      ].join('\n'),
    );
    expect(r.out.split('\n')).toEqual(['0', 'fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero']);
    const h = JSON.parse((await execa('docker', ['inspect', '--format', '{{json .HostConfig}}', a.containerId])).stdout) as { Memory: number; PidsLimit: number };
    expect([h.Memory, h.PidsLimit]).toEqual([a.limits.memoryBytes, a.limits.maxProcesses]);
  });

  it('a symlink out planted in the workspace is not followed by the host-side editor', async () => {
    expect((await sh(a, 'ln -s /etc/shadow /workspace/shadow && ln -s / /workspace/root && echo ok')).out).toBe('ok');
    for (const p of ['shadow', 'root/etc/shadow']) {
      const viewed = await callTool(editorTool, { command: 'view', path: p }, makeToolContext({ sandbox: a }));
      expect(viewed.isError).toBe(true);
      expect(outcomeText(viewed)).toMatch(/is a symbolic link to .*, outside the workspace; tools do not follow it/);
    }
  });

  it("keeps a call's secret off every host command line and out of the engine's container and exec records", async () => {
    const running = a.run({ argv: ['/bin/sh', '-c', 'echo go; sleep 3'], env: { CALL_SECRET: 'sk-call-5528' }, onOutput: () => undefined });
    await new Promise((r) => setTimeout(r, 1000));
    try {
      expect(await hostProcessesHolding('sk-call-5528', 'cmdline')).toEqual([]);
      const c = (await execa('docker', ['inspect', a.containerId])).stdout;
      expect(c).not.toContain('sk-call-5528');
      expect(c).not.toContain('sk-dc-4471');
      const execIds = (JSON.parse(c) as Array<{ ExecIDs: string[] | null }>)[0]!.ExecIDs ?? [];
      expect(execIds.length).toBeGreaterThan(0);
      for (const id of execIds) {
        const e = await execa('curl', ['-s', '--unix-socket', '/var/run/docker.sock', `http://engine/exec/${id}/json`]);
        expect(e.stdout).toContain(a.containerId);
        expect(e.stdout).not.toContain('sk-call-5528');
      }
    } finally {
      await running;
    }
  });

  it("a call's environment reaches only the command: it never chooses or steers the docker CLI the runner starts on the host", async () => {
    // A host folder holding a `docker` that says when it runs, which a call could name in PATH.
    const bin = path.join(work.dir, 'bin');
    const marker = path.join(work.dir, 'fake-docker-ran');
    await mkdir(bin);
    await writeFile(path.join(bin, 'docker'), `#!/bin/sh\ntouch ${marker}\n`);
    await chmod(path.join(bin, 'docker'), 0o755);
    const env = { PATH: `${bin}:/usr/bin:/bin`, DOCKER_HOST: 'unix:///nonexistent-engine.sock', HOME: work.dir, MULTI: 'a\nb "c" $d `e`\n\n', i: '9' };
    const r = await a.run({ argv: ['python3', '-c', 'import os, json; print(json.dumps({k: v for k, v in os.environ.items() if k in ("PATH", "DOCKER_HOST", "HOME", "MULTI", "i") or k.startswith("SANDBOX_RUNNER")}))'], env });
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout.toString())).toEqual(env);
    await expect(stat(marker)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(a.run({ argv: ['/bin/true'], env: { 'NOT-A-NAME': '1' } })).rejects.toMatchObject({ code: 'invalid_input' });
  });
});

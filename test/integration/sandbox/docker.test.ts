import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerDriver } from '../../../src/sandbox/docker/docker-driver.js';
import type { DockerSandbox } from '../../../src/sandbox/docker/docker-sandbox.js';
import type { RunResult } from '../../../src/sandbox/driver.js';
import { waitUntil } from '../../helpers/processes.js';
import { isAlive, KEYRING_PROBE, sandboxId, spec, tempDir, type SpecOverrides } from './helpers.js';

// Docker hardening (issue 3), checked twice: in the container's HostConfig and
// from inside; then each limit, hit for real.
describe('docker sandbox', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let driver: DockerDriver;
  let sb: DockerSandbox;
  let stateDir: string;
  const owner = `test-${process.pid}`;

  beforeAll(async () => {
    work = await tempDir('sr-docker-');
    stateDir = path.join(work.dir, 'runner-state');
    await mkdir(stateDir, { mode: 0o700 });
    await writeFile(path.join(stateDir, 'identity.json'), '{"secret":"runner-private-key"}', { mode: 0o600 });
    driver = new DockerDriver({ workRoot: path.join(work.dir, 'sandboxes'), owner });
    sb = (await driver.create(spec(sandboxId('dk'), { env: { GIVEN: 'yes', SECRET_TOKEN: 'v-123' } }))) as DockerSandbox;
  });

  afterAll(async () => {
    await sb?.dispose();
    await driver?.cleanupOrphans();
    await work?.remove();
  });

  const sh = async (script: string, s: DockerSandbox = sb) => {
    const r = await s.run({ argv: ['/bin/sh', '-c', script] });
    return { ...r, out: r.stdout.toString().trim() };
  };

  it('probe reports the engine and the imported image', async () => {
    const status = await driver.probe();
    expect(status).toMatchObject({ available: true });
    expect(status.message).toContain('base image imported');
  });

  it('creates the container with every hardening flag', async () => {
    const r = await execa('docker', ['inspect', sb.containerId]);
    const [c] = JSON.parse(r.stdout) as Array<{ HostConfig: Record<string, unknown>; Config: Record<string, unknown>; Mounts: Array<{ Source: string; Destination: string }> }>;
    const h = c!.HostConfig;
    expect(h.CapDrop).toEqual(['ALL']);
    expect(h.CapAdd ?? null).toBeNull();
    expect(h.SecurityOpt).toEqual(['no-new-privileges']);
    expect(h.ReadonlyRootfs).toBe(true);
    expect(Object.keys(h.Tmpfs as object)).toEqual(['/tmp']);
    expect(h.PidsLimit).toBe(256);
    expect(h.Memory).toBe(256 * 1024 * 1024);
    expect(h.MemorySwap).toBe(h.Memory);
    expect(h.NanoCpus).toBe(1e9);
    expect(h.NetworkMode).toBe('none');
    expect(h.Privileged).toBe(false);
    const uid = (await stat(sb.workspaceDir)).uid;
    expect(uid).toBeGreaterThan(65535);
    expect(c!.Config.User).toBe(`${uid}:${uid}`);
    expect(c!.Mounts.map((m) => m.Destination)).toEqual(['/workspace']);
    for (const m of c!.Mounts) expect(m.Source).not.toMatch(/\.sock$/);
    // Secrets travel at exec time, never in the container's config.
    expect(JSON.stringify(c!.Config.Env)).not.toContain('v-123');
  });

  it("from inside: no capabilities, no_new_privs, the sandbox's own uid, no network but lo, read-only root", async () => {
    const r = await sh('grep -E "^(CapEff|CapPrm|NoNewPrivs)" /proc/self/status; id -u; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "; touch /x 2>&1; touch /usr/x 2>&1; echo w > /workspace/w && cat /workspace/w; echo t > /tmp/t && cat /tmp/t; hostname');
    expect(r.out).toMatch(/CapEff:\s+0000000000000000/);
    expect(r.out).toMatch(/CapPrm:\s+0000000000000000/);
    expect(r.out).toMatch(/NoNewPrivs:\s+1/);
    const lines = r.out.split('\n');
    expect(lines).toContain(String((await stat(sb.workspaceDir)).uid));
    expect(lines).toContain('lo');
    expect(lines.filter((l) => /^(eth|ens|docker|veth)/.test(l))).toEqual([]);
    expect(r.out.match(/Read-only file system/g)?.length).toBe(2);
    expect(lines.slice(-3)).toEqual(['w', 't', 'sandbox']);
    expect(await readdir(sb.workspaceDir)).toContain('w');
  });

  it('refuses the kernel keyring calls (not namespaced) and holds no fd but its stdio', async () => {
    const keys = await sb.run({ argv: ['python3', '-c', KEYRING_PROBE] });
    expect(keys.stdout.toString().trim().split('\n')).toEqual(['add_key -1 EPERM', 'request_key -1 EPERM', 'keyctl -1 EPERM']);
    // 0-2 and the listing's own directory fd.
    expect((await sh('ls /proc/self/fd | sort -n | tr "\\n" " "')).out).toBe('0 1 2 3');
  });

  it("holds the given environment and none of the runner's; cannot see the host's /root or state dir", async () => {
    process.env.RUNNER_ONLY_MARKER = 'host-side';
    try {
      const env = (await sh('env')).out;
      expect(env).toContain('GIVEN=yes');
      expect(env).toContain('SECRET_TOKEN=v-123');
      expect(env).not.toContain('RUNNER_ONLY_MARKER');
      const r = await sh(`ls -A /root 2>&1; cat ${path.join(stateDir, 'identity.json')} 2>&1; ls /var/run/docker.sock 2>&1; echo end`);
      expect(r.out).not.toContain('runner-private-key');
      expect(r.out).toMatch(/docker\.sock'?: No such file/);
    } finally {
      delete process.env.RUNNER_ONLY_MARKER;
    }
  });

  it('binds host folders read-only or read-write', async () => {
    const ro = path.join(work.dir, 'store-ro');
    const rw = path.join(work.dir, 'store-rw');
    await mkdir(ro, { mode: 0o755 });
    await mkdir(rw);
    await chmod(rw, 0o777);
    await writeFile(path.join(ro, 'note.md'), 'remember\n', { mode: 0o644 });
    const mounts = [
      { hostPath: ro, path: '/mnt/memory/ro', readOnly: true },
      { hostPath: rw, path: '/mnt/memory/rw', readOnly: false },
    ];
    const s = await driver.create({ ...spec(sandboxId('dmnt')), mounts } as Parameters<DockerDriver['create']>[0]);
    try {
      const r = await s.run({ argv: ['/bin/sh', '-c', 'cat /mnt/memory/ro/note.md; touch /mnt/memory/ro/x 2>&1; echo saved > /mnt/memory/rw/new.md; echo ok'] });
      expect(r.stdout.toString()).toMatch(/^remember\n.*Read-only file system\nok\n$/s);
      expect(await readFile(path.join(rw, 'new.md'), 'utf8')).toBe('saved\n');
    } finally {
      await s.dispose();
    }
  });

  it('keeps a live shell across commands (spawn with stdin)', async () => {
    const shell = await sb.spawn({ argv: ['/bin/bash'] });
    const seen = new Promise<string>((resolve) => {
      let acc = '';
      shell.stdout.on('data', (c: Buffer) => {
        acc += c.toString();
        if (acc.includes('ready')) resolve(acc);
      });
    });
    shell.stdin.write('cd /tmp; X=7\necho ready $X $PWD\n');
    expect(await seen).toContain('ready 7 /tmp');
    shell.kill();
    expect((await shell.exited).code).not.toBe(0);
  });

  describe('limits', () => {
    async function hostile(overrides: SpecOverrides, argv: string[], timeoutMs?: number): Promise<RunResult> {
      const s = await driver.create(spec(sandboxId('dl'), overrides));
      try {
        let started!: () => void;
        const running = new Promise<void>((r) => (started = r));
        const run = s.run({ argv, ...(timeoutMs ? { timeoutMs } : {}), onOutput: () => started() });
        await Promise.race([running, run]);
        // Another sandbox keeps answering meanwhile.
        const ok = await sb.run({ argv: ['/bin/echo', 'alive'] });
        expect(ok.stdout.toString()).toBe('alive\n');
        return await run;
      } finally {
        await s.dispose();
      }
    }

    it('a fork bomb ends as processes', async () => {
      const r = await hostile({ limits: { maxProcesses: 64 } }, ['/bin/bash', '-c', 'echo go; bomb() { bomb | bomb & }; bomb; sleep 600']);
      expect(r.ended).toBe('processes');
    });

    it('a memory balloon ends as memory', async () => {
      const r = await hostile({ limits: { memoryBytes: 96 * 1024 * 1024 } }, ['/usr/bin/python3', '-c', 'print("go", flush=True)\nb = []\nwhile True: b.append(b"x" * (8 << 20))']);
      expect(r.ended).toBe('memory');
    });

    it('a disk fill ends as disk', async () => {
      const r = await hostile({ limits: { workspaceBytes: 16 * 1024 * 1024 } }, ['/bin/sh', '-c', 'echo go; dd if=/dev/zero of=/workspace/fill bs=1M count=64; while true; do echo more >> /workspace/f2; done']);
      expect(r.ended).toBe('disk');
    });

    it('a 10 GB stdout flood ends as output with a marker', async () => {
      const r = await hostile({ limits: { outputBytes: 64 * 1024 } }, ['/bin/sh', '-c', 'echo go; head -c 10G /dev/zero']);
      expect(r.ended).toBe('output');
      expect(r.stdout.length).toBeLessThan(64 * 1024 + 100);
      expect(r.stdout.toString()).toMatch(/\[output truncated: \d+ bytes dropped\]\n$/);
    });

    it('a wall-time overrun ends as wall_time', async () => {
      const r = await hostile({}, ['/bin/sh', '-c', 'echo go; sleep 600'], 500);
      expect(r.ended).toBe('wall_time');
    });

    it('abort kills the whole tree inside the container', async () => {
      const ac = new AbortController();
      let pids: number[] = [];
      const r = await sb.run({
        argv: ['/bin/sh', '-c', 'sleep 601 & sleep 602 & echo started; wait'],
        signal: ac.signal,
        onOutput: async () => {
          const top = await execa('docker', ['top', sb.containerId, '-eo', 'pid,args']);
          pids = top.stdout.split('\n').filter((l) => /^\s*\d+\s+sleep 60[12]$/.test(l)).map((l) => Number(l.trim().split(/\s+/)[0]));
          ac.abort();
        },
      });
      expect(r.ended).toBe('cancelled');
      expect(pids.length).toBe(2);
      // The whole group got SIGKILL before the run ended; exec'd processes share
      // the container's pid namespace, so a sibling may take a moment to be
      // scheduled and die after the command's own exit was reported: within a second.
      await waitUntil(async () => ((await Promise.all(pids.map(isAlive))).every((alive) => !alive) ? true : undefined), 1000, 'the tree gone within a second');
    });
  });

  it('probe names the fix when the runtime is not registered', async () => {
    // runsc is registered on CI (docker-gvisor.test.ts); this name is not.
    const missing = new DockerDriver({ workRoot: path.join(work.dir, 'gv'), runtime: 'runsc-missing' });
    const status = await missing.probe();
    expect(status.available).toBe(false);
    expect(status.message).toContain('runtime runsc-missing is not registered');
    expect(status.fix).toContain('"runtimeArgs":["--network=none"]');
  });

  it('probe names the fix when no engine answers', async () => {
    const stale = new DockerDriver({ workRoot: path.join(work.dir, 'st') });
    process.env.DOCKER_HOST = `unix://${path.join(work.dir, 'no-engine.sock')}`;
    try {
      const status = await stale.probe();
      expect(status).toMatchObject({ available: false });
      expect(status.fix).toMatch(/dockerd/);
    } finally {
      delete process.env.DOCKER_HOST;
    }
  });

  it('cleanupOrphans removes the containers a previous runner left', async () => {
    const other = new DockerDriver({ workRoot: path.join(work.dir, 'orphans'), owner: `${owner}-o` });
    const left = (await other.create(spec(sandboxId('orphan')))) as DockerSandbox;
    const restarted = new DockerDriver({ workRoot: path.join(work.dir, 'orphans'), owner: `${owner}-o` });
    expect(await restarted.cleanupOrphans()).toEqual([left.containerId]);
    const ps = await execa('docker', ['ps', '-aq', '--filter', `id=${left.containerId}`]);
    expect(ps.stdout.trim()).toBe('');
    await left.dispose();
  });
});

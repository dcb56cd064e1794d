import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BwrapDriver } from '../../../src/sandbox/bwrap/bwrap-driver.js';
import type { BwrapSandbox } from '../../../src/sandbox/bwrap/bwrap-sandbox.js';
import type { RunResult, Sandbox } from '../../../src/sandbox/driver.js';
import { IMAGES_DIR, isAlive, sandboxId, spec, tempDir, type SpecOverrides } from './helpers.js';

// Every limit of issue 3, hit for real; each run ends with a clear status and a
// neighbouring sandbox keeps working meanwhile.
describe('bwrap sandbox limits', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let driver: BwrapDriver;
  let neighbour: Sandbox;

  beforeAll(async () => {
    work = await tempDir('sr-bwrap-lim-');
    driver = new BwrapDriver({ imagesDir: IMAGES_DIR, workRoot: path.join(work.dir, 'sandboxes'), cgroupParent: `sandbox-runner-test-${process.pid}-l` });
    neighbour = await driver.create(spec(sandboxId('nb')));
  });

  afterAll(async () => {
    await neighbour?.dispose();
    await driver?.cleanupOrphans({ parentToo: true });
    await work?.remove();
  });

  /** Runs `hostile` in a fresh sandbox while the neighbour answers a call. */
  async function withNeighbour(limits: SpecOverrides, argv: string[], timeoutMs?: number): Promise<RunResult> {
    const sb = await driver.create(spec(sandboxId('lim'), limits));
    try {
      let started!: () => void;
      const running = new Promise<void>((r) => (started = r));
      const hostile = sb.run({ argv, ...(timeoutMs ? { timeoutMs } : {}), onOutput: () => started() });
      // The neighbour runs while the hostile one is in full swing.
      await Promise.race([running, hostile]);
      const ok = await neighbour.run({ argv: ['/bin/sh', '-c', 'echo alive'] });
      expect(ok.ended).toBe('exited');
      expect(ok.stdout.toString()).toBe('alive\n');
      return await hostile;
    } finally {
      await sb.dispose();
    }
  }

  it('a fork bomb ends as processes', async () => {
    const r = await withNeighbour({ limits: { maxProcesses: 64 } }, ['/bin/bash', '-c', 'echo go; bomb() { bomb | bomb & }; bomb; sleep 600']);
    expect(r.ended).toBe('processes');
  });

  it('a memory balloon ends as memory', async () => {
    const r = await withNeighbour({ limits: { memoryBytes: 96 * 1024 * 1024 } }, [
      '/usr/bin/python3',
      '-c',
      'import sys\nprint("go", flush=True)\nb = []\nwhile True: b.append(b"x" * (8 << 20))',
    ]);
    expect(r.ended).toBe('memory');
  });

  it('a disk fill ends as disk and the workspace never exceeds its size', async () => {
    const r = await withNeighbour({ limits: { workspaceBytes: 16 * 1024 * 1024 } }, [
      '/bin/sh',
      '-c',
      'echo go; dd if=/dev/zero of=/workspace/fill bs=1M count=64; while true; do echo more >> /workspace/fill2; done',
    ]);
    expect(r.ended).toBe('disk');
  });

  it('a 10 GB stdout flood is cut with a marker and ends as output without reading it all', async () => {
    const before = process.memoryUsage().rss;
    const r = await withNeighbour({ limits: { outputBytes: 64 * 1024 } }, ['/bin/sh', '-c', 'echo go; head -c 10G /dev/zero']);
    expect(r.ended).toBe('output');
    expect(r.stdoutTruncated).toBe(true);
    expect(r.stdout.length).toBeLessThan(64 * 1024 + 100);
    expect(r.stdout.toString()).toMatch(/\[output truncated: \d+ bytes dropped\]\n$/);
    expect(process.memoryUsage().rss - before).toBeLessThan(256 * 1024 * 1024);
  });

  it('a wall-time overrun ends as wall_time', async () => {
    const r = await withNeighbour({}, ['/bin/sh', '-c', 'echo go; sleep 600'], 500);
    expect(r.ended).toBe('wall_time');
    expect(r.stdout.toString()).toBe('go\n');
  });

  it('abort kills the whole process tree and the run ends cancelled', async () => {
    const sb = (await driver.create(spec(sandboxId('abort')))) as BwrapSandbox;
    try {
      const ac = new AbortController();
      let pids: number[] = [];
      const run = sb.run({
        argv: ['/bin/sh', '-c', 'sleep 600 & sleep 600 & (sleep 600; echo never) & echo started; wait'],
        signal: ac.signal,
        onOutput: async (_s, chunk) => {
          if (!chunk.toString().includes('started')) return;
          pids = await sb.hostPids();
          ac.abort();
        },
      });
      const r = await run;
      expect(r.ended).toBe('cancelled');
      expect(pids.length).toBeGreaterThanOrEqual(5);
      for (const pid of pids) expect(await isAlive(pid)).toBe(false);
    } finally {
      await sb.dispose();
    }
  });

  it('dispose kills a live spawned shell and everything it started', async () => {
    const sb = (await driver.create(spec(sandboxId('spawn')))) as BwrapSandbox;
    const shell = await sb.spawn({ argv: ['/bin/bash'] });
    const seen = new Promise<string>((resolve) => {
      let acc = '';
      shell.stdout.on('data', (c: Buffer) => {
        acc += c.toString();
        if (acc.includes('ready')) resolve(acc);
      });
    });
    shell.stdin.write('cd /tmp; X=42; sleep 600 &\necho ready $X $PWD\n');
    expect(await seen).toContain('ready 42 /tmp');
    const pids = await sb.hostPids();
    await sb.dispose();
    expect((await shell.exited).signal).toBe('SIGKILL');
    for (const pid of pids) expect(await isAlive(pid)).toBe(false);
  });

  it('every process of a run, threads and grandchildren too, is in each of the sandbox cgroups', async () => {
    const sb = (await driver.create(spec(sandboxId('cg')))) as BwrapSandbox;
    try {
      // A background grandchild plus python threads: nothing may stay in the runner's cgroups.
      const shell = await sb.spawn({ argv: ['/bin/bash', '-c', 'sleep 600 & python3 -c "import threading,time; [threading.Thread(target=time.sleep, args=(600,)).start() for _ in range(3)]; print(1, flush=True); time.sleep(600)"'] });
      await new Promise<void>((resolve) => shell.stdout.once('data', () => resolve()));
      const pids = await sb.hostPids();
      expect(pids.length).toBeGreaterThanOrEqual(4);
      const v2 = (await driver.limitEnforcement()) === 'cgroups-v2';
      for (const pid of pids) {
        const tids = await readdir(`/proc/${pid}/task`);
        for (const tid of tids) {
          const lines = (await readFile(`/proc/${pid}/task/${tid}/cgroup`, 'utf8')).split('\n').filter(Boolean);
          for (const line of lines) {
            const [, controllers, where] = /^\d+:([^:]*):(.*)$/.exec(line)!;
            const limited = v2 ? controllers === '' : ['memory', 'pids', 'cpu'].some((c) => controllers!.split(',').includes(c));
            if (limited) expect(where, `${pid}/${tid} ${line}`).toContain(sb.id);
          }
        }
      }
      await sb.dispose();
      expect((await shell.exited).signal).toBe('SIGKILL');
    } finally {
      await sb.dispose();
    }
  });

  it('rlimits apply when cgroups are not used', async () => {
    const d = new BwrapDriver({ imagesDir: IMAGES_DIR, workRoot: path.join(work.dir, 'rl'), limits: 'rlimits' });
    expect(await d.limitEnforcement()).toBe('rlimits');
    const sb = await d.create(spec(sandboxId('rl'), { limits: { maxProcesses: 77, workspaceBytes: 8 * 1024 * 1024 } }));
    try {
      const r = await sb.run({ argv: ['/bin/cat', '/proc/self/limits'] });
      const limits = r.stdout.toString();
      expect(limits).toMatch(/^Max processes\s+77\s+77\s/m);
      expect(limits).toMatch(new RegExp(`^Max file size\\s+${8 * 1024 * 1024}\\s`, 'm'));
      expect(limits).toMatch(new RegExp(`^Max address space\\s+${256 * 1024 * 1024}\\s`, 'm'));
    } finally {
      await sb.dispose();
    }
  });
});

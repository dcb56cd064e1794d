import { readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BwrapDriver } from '../../../src/sandbox/bwrap/bwrap-driver.js';
import type { BwrapSandbox } from '../../../src/sandbox/bwrap/bwrap-sandbox.js';
import { SandboxSpawner } from '../../../src/sandbox/bwrap/sandbox-spawner.js';
import { CgroupManager } from '../../../src/sandbox/cgroups/cgroups.js';
import { waitUntil } from '../../helpers/processes.js';
import { captureLogger, IMAGES_DIR, isAlive, sandboxId, spec, tempDir } from './helpers.js';

/** The parent pid of a host process. */
async function parentOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

/** Host pids of the sandbox once a process whose command line starts with `prefix` runs in it. */
function running(sb: BwrapSandbox, prefix: string): Promise<number[]> {
  return waitUntil(async () => {
    const pids = await sb.hostPids();
    const cmdlines = await Promise.all(pids.map((p) => readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')));
    return cmdlines.some((c) => c.startsWith(prefix)) ? pids : undefined;
  }, 20_000, `${prefix} running`);
}

const WAITER = '/bin/bash\0--norc\0';

/** The identity and privilege lines of a /proc/<pid>/status text. */
function credentials(status: string): string[] {
  return status.match(/^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):.*$/gm) ?? [];
}

/** The cgroup text of every thread of `pid`, sorted, without duplicates. */
async function threadCgroups(pid: number): Promise<string[]> {
  const tids = await readdir(`/proc/${pid}/task`);
  const texts = await Promise.all(tids.map((t) => readFile(`/proc/${pid}/task/${t}/cgroup`, 'utf8').catch(() => undefined)));
  return [...new Set(texts.filter((t): t is string => t !== undefined))].sort();
}

/** The cgroup path of `pid` in each hierarchy that holds `controller` (v1), or the unified one (`''`). */
async function cgroupOf(pid: number, controller: string): Promise<string | undefined> {
  const text = await readFile(`/proc/${pid}/cgroup`, 'utf8');
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (m && (controller === '' ? m[1] === '0' && m[2] === '' : m[2]!.split(',').includes(controller))) return m[3];
  }
  return undefined;
}

// The spawner helper starts spare sandboxes' waiters so that the runner never
// forks for them. What a user must observe: the same runs as before, and
// nothing hangs or leaks when the helper dies at any point.
describe('bwrap sandbox spawner', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let spawner: SandboxSpawner;
  let driver: BwrapDriver;
  const { logger, lines } = captureLogger();

  beforeAll(async () => {
    work = await tempDir('sr-bwrap-spawner-');
    spawner = new SandboxSpawner();
    driver = new BwrapDriver({ imagesDir: IMAGES_DIR, workRoot: path.join(work.dir, 'sandboxes'), cgroupParent: `sandbox-runner-test-${process.pid}-sp`, spawner, logger });
  });

  afterAll(async () => {
    await spawner?.dispose();
    await driver?.cleanupOrphans({ parentToo: true });
    await work?.remove();
  });

  async function prestarted(): Promise<BwrapSandbox> {
    const sb = (await driver.create(spec(sandboxId('sp')))) as BwrapSandbox;
    await sb.prestart();
    return sb;
  }

  /** The pid of the sandbox's outermost process (the one whose parent is outside the sandbox). */
  async function outermost(sb: BwrapSandbox, pids: number[]): Promise<number> {
    for (const pid of pids) if (!pids.includes(await parentOf(pid))) return pid;
    throw new Error(`no outermost process among ${pids.join(',')} of ${sb.id}`);
  }

  it('starts the waiter as a child of the spawner, not of the runner, and the run is the same', async () => {
    const sb = await prestarted();
    try {
      const pids = await running(sb, WAITER);
      expect(spawner.pid).toBeDefined();
      expect(spawner.pid).not.toBe(process.pid);
      expect(await parentOf(await outermost(sb, pids))).toBe(spawner.pid);
      const r = await sb.run({ argv: ['/bin/bash', '-c', 'cat; echo "to stderr" >&2; exit 3'], stdin: 'through stdin\n' });
      expect(r.exitCode).toBe(3);
      expect(r.ended).toBe('exited');
      expect(r.stdout.toString()).toBe('through stdin\n');
      expect(r.stderr.toString()).toBe('to stderr\n');
      for (const pid of pids) expect(await isAlive(pid)).toBe(false);
    } finally {
      await sb.dispose();
    }
  });

  it('starts bwrap itself, without the wrapper programs: the uid, gid, groups and capabilities setpriv gave, in the sandbox cgroups, the spawner back in its own', async () => {
    const sb = await prestarted();
    const home = await threadCgroups(spawner.pid!);
    try {
      const pids = await running(sb, WAITER);
      const outer = await outermost(sb, pids);
      // bwrap is the spawner's own child, started as bwrap: no /bin/sh, no setpriv exec'd into it.
      expect(sb.waiterStart).toBe('direct');
      expect(await parentOf(outer)).toBe(spawner.pid);
      expect(path.basename(await readlink(`/proc/${outer}/exe`))).toBe('bwrap');
      const uid = sb.hostUid!;
      expect(uid).toBeGreaterThan(0);
      const direct = credentials(await readFile(`/proc/${outer}/status`, 'utf8'));
      expect(direct).toContain(`Uid:\t${uid}\t${uid}\t${uid}\t${uid}`);
      expect(direct).toContain(`Gid:\t${uid}\t${uid}\t${uid}\t${uid}`);
      expect(direct.find((l) => l.startsWith('Groups:'))!.trim()).toBe('Groups:');
      expect(direct).toContain('CapEff:\t0000000000000000');
      expect(direct).toContain('CapPrm:\t0000000000000000');

      // Every process of the sandbox, from the start, is in each of its cgroups.
      const own = `/sandbox-runner-test-${process.pid}-sp/${sb.id}`;
      const controllers = (await cgroupOf(outer, 'pids')) === undefined ? [''] : ['memory', 'pids', 'cpu'];
      for (const pid of pids) for (const c of controllers) expect(await cgroupOf(pid, c)).toBe(own);
      // The spawner moved itself back: none of its threads is left in the sandbox's cgroups.
      const after = await threadCgroups(spawner.pid!);
      expect(after).toEqual(home);
      expect(after.join('\n')).not.toContain(sb.id);

      // Seen from inside, the run the waiter serves (started directly) and the
      // next one (started by the runner through the wrapper and setpriv) are alike.
      const look = ['/bin/sh', '-c', 'grep -E "^(Uid|Gid|Groups|Cap|NoNewPrivs|Seccomp)" /proc/self/status; cat /proc/self/cgroup; id'];
      const first = await sb.run({ argv: look });
      const second = await sb.run({ argv: look });
      expect(first.exitCode).toBe(0);
      expect(first.stdout.toString()).toContain('uid=1000');
      expect(first.stdout.toString()).toBe(second.stdout.toString());

      // And seen from the host, bwrap started through the wrapper and setpriv has the same identity.
      const proc = await sb.spawn({ argv: ['sleep', '600'] });
      try {
        const sleeping = await running(sb, 'sleep\x00600');
        const wrapped = await (async () => {
          for (const pid of sleeping) if ((await parentOf(pid)) === process.pid) return pid;
          throw new Error('no process of the sandbox is the runner\'s child');
        })();
        expect(path.basename(await readlink(`/proc/${wrapped}/exe`))).toBe('bwrap');
        expect(credentials(await readFile(`/proc/${wrapped}/status`, 'utf8'))).toEqual(direct);
      } finally {
        proc.kill();
        await proc.exited;
      }
    } finally {
      await sb.dispose();
    }
  });

  it('when it cannot join a cgroup itself, it starts the wrapper line instead, says so, and stays in its own cgroup', async () => {
    const { logger: own, lines: said } = captureLogger();
    const helper = new SandboxSpawner({ logger: own });
    const cgroups = new CgroupManager({ parent: `sandbox-runner-test-${process.pid}-sp3` });
    const cg = (await cgroups.create('probe', { memoryBytes: 64 * 1024 * 1024, maxProcesses: 16, cpus: 1 }))!;
    try {
      const t = cg.target;
      // The first files are joined, the last cannot be: the helper must undo the part it did.
      const target = { ...t, files: [...t.files, path.join(work.dir, 'no-such-cgroup', 'tasks')], controllers: [...t.controllers, t.controllers[0]!] };
      // Both wait for their stdin to end, as a waiter waits for its spec (the pipes are handed over first).
      const p = await helper.spawn(['/bin/sh', '-c', 'cat; echo through the wrapper'], { PATH: '/usr/bin:/bin' }, { argv: ['/bin/sh', '-c', 'cat; echo direct'], cgroup: target });
      p.stdin.end();
      const chunks: Buffer[] = [];
      p.stdout.on('data', (c: Buffer) => chunks.push(c));
      const ended = new Promise((r) => p.stdout.once('close', r));
      expect(await p.exit).toEqual({ code: 0, signal: null });
      await ended;
      for (const pipe of [p.stderr, p.spec]) pipe.destroy();
      expect(p.direct).toBe(false);
      expect(Buffer.concat(chunks).toString()).toBe('through the wrapper\n');
      expect(said.some((l) => String(l.msg).includes('could not start bwrap directly'))).toBe(true);
      expect(await cg.pids()).toEqual([]);
      expect((await threadCgroups(helper.pid!)).join('\n')).not.toContain('probe');
    } finally {
      await helper.dispose();
      await cg.remove();
      await cgroups.cleanupOrphans({ parentToo: true });
    }
  });

  it('a run that comes while the waiter still starts waits for it and is served by it', async () => {
    const sb = (await driver.create(spec(sandboxId('sp')))) as BwrapSandbox;
    try {
      const starting = sb.prestart();
      const proc = await sb.spawn({ argv: ['sleep', '600'] });
      await starting;
      const pids = await running(sb, 'sleep\x00600');
      // Served by the pre-started waiter: the spawner started its tree, not the runner.
      expect(await parentOf(await outermost(sb, pids))).toBe(spawner.pid);
      proc.kill();
      expect((await proc.exited).signal).toBe('SIGKILL');
      for (const pid of pids) expect(await isAlive(pid)).toBe(false);
    } finally {
      await sb.dispose();
    }
  });

  it('killed while a waiter waits: the waiter goes with it, the sandbox still runs its call, a new spawner serves the next', async () => {
    const sb = await prestarted();
    try {
      const pids = await running(sb, WAITER);
      const old = spawner.pid!;
      process.kill(old, 'SIGKILL');
      await waitUntil(async () => !(await Promise.all(pids.map(isAlive))).some(Boolean), 10_000, 'waiter gone with the spawner');
      const r = await sb.run({ argv: ['echo', 'still served'] });
      expect(r.exitCode).toBe(0);
      expect(r.stdout.toString()).toBe('still served\n');

      const next = await prestarted();
      try {
        const nextPids = await running(next, WAITER);
        expect(spawner.pid).toBeDefined();
        expect(spawner.pid).not.toBe(old);
        expect(await parentOf(await outermost(next, nextPids))).toBe(spawner.pid);
        expect((await next.run({ argv: ['echo', 'new spawner'] })).stdout.toString()).toBe('new spawner\n');
      } finally {
        await next.dispose();
      }
    } finally {
      await sb.dispose();
    }
  });

  it('killed while a call runs in its waiter: the run ends killed, never hangs, and nothing is left', async () => {
    const sb = await prestarted();
    try {
      await running(sb, WAITER);
      const run = sb.run({ argv: ['sleep', '600'] });
      const pids = await running(sb, 'sleep\x00600');
      process.kill(spawner.pid!, 'SIGKILL');
      const r = await run;
      expect(r.signal).toBe('SIGKILL');
      expect(r.exitCode).toBeNull();
      for (const pid of pids) expect(await isAlive(pid)).toBe(false);
    } finally {
      await sb.dispose();
    }
  });

  it('when the spawner cannot serve, the waiter is started by the runner and says so', async () => {
    const closed = new SandboxSpawner();
    await closed.dispose();
    const own = new BwrapDriver({ imagesDir: IMAGES_DIR, workRoot: path.join(work.dir, 'own'), cgroupParent: `sandbox-runner-test-${process.pid}-sp2`, spawner: closed, logger });
    const sb = (await own.create(spec(sandboxId('sp')))) as BwrapSandbox;
    try {
      await sb.prestart();
      const pids = await running(sb, WAITER);
      expect(await parentOf(await outermost(sb, pids))).toBe(process.pid);
      expect(sb.waiterStart).toBe('wrapper');
      expect(lines.some((l) => String(l.msg).includes('sandbox spawner failed'))).toBe(true);
      expect((await sb.run({ argv: ['echo', 'from the runner'] })).stdout.toString()).toBe('from the runner\n');
    } finally {
      await sb.dispose();
      await own.cleanupOrphans({ parentToo: true });
    }
  });
});

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BwrapDriver } from '../../../src/sandbox/bwrap/bwrap-driver.js';
import type { BwrapSandbox } from '../../../src/sandbox/bwrap/bwrap-sandbox.js';
import { SandboxSpawner } from '../../../src/sandbox/bwrap/sandbox-spawner.js';
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
      expect(lines.some((l) => String(l.msg).includes('sandbox spawner failed'))).toBe(true);
      expect((await sb.run({ argv: ['echo', 'from the runner'] })).stdout.toString()).toBe('from the runner\n');
    } finally {
      await sb.dispose();
      await own.cleanupOrphans({ parentToo: true });
    }
  });
});

import { readdir, readFile, readlink, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BwrapDriver } from '../../../src/sandbox/bwrap/bwrap-driver.js';
import type { BwrapSandbox } from '../../../src/sandbox/bwrap/bwrap-sandbox.js';
import type { SandboxProcess } from '../../../src/sandbox/driver.js';
import { waitUntil } from '../../helpers/processes.js';
import { hostProcessesHolding, IMAGES_DIR, isAlive, sandboxId, spec, tempDir } from './helpers.js';

/** Resolves with everything `stream` says until `marker` shows up. */
function waitFor(stream: NodeJS.ReadableStream, marker: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    stream.on('data', (c: Buffer) => {
      seen += c.toString();
      if (seen.includes(marker)) resolve(seen);
    });
    stream.once('end', () => reject(new Error(`stream ended before ${marker}: ${seen}`)));
  });
}

// A sandbox's first process pre-started (the spare's bwrap waiter): the run it
// serves sees exactly its own argv, env, cwd and stdin, under the same
// hardening and limits, and a waiter never used leaves nothing behind.
describe('bwrap pre-started first process', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let driver: BwrapDriver;

  beforeAll(async () => {
    work = await tempDir('sr-bwrap-pre-');
    driver = new BwrapDriver({ imagesDir: IMAGES_DIR, workRoot: path.join(work.dir, 'sandboxes'), cgroupParent: `sandbox-runner-test-${process.pid}-p` });
  });

  afterAll(async () => {
    await driver?.cleanupOrphans({ parentToo: true });
    await work?.remove();
  });

  async function prestarted(env: Record<string, string> = { PATH: '/usr/bin:/bin', GIVEN: 'yes' }): Promise<BwrapSandbox> {
    const sb = (await driver.create(spec(sandboxId('pre'), { env }))) as BwrapSandbox;
    await sb.prestart();
    return sb;
  }

  /** Host pids of the sandbox once its waiter (bash reading its spec) runs. */
  function waiterRunning(sb: BwrapSandbox): Promise<number[]> {
    return waitUntil(async () => {
      const pids = await sb.hostPids();
      const cmdlines = await Promise.all(pids.map((p) => readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')));
      return cmdlines.some((c) => c.startsWith('/bin/bash\0--norc\0')) ? pids : undefined;
    }, 20_000, 'waiter running');
  }

  /** Spawns on a pre-started sandbox once its waiter runs; `waiting` are the pids then (the waiter becomes the program). */
  async function spawnOnWaiter(sb: BwrapSandbox, options: Parameters<BwrapSandbox['spawn']>[0]): Promise<SandboxProcess> {
    const waiting = await waiterRunning(sb);
    const proc = await sb.spawn(options);
    return Object.assign(proc, { waiting });
  }

  it('serves the first run with exactly its argv, env, cwd and stdin', async () => {
    const fresh = await prestarted();
    try {
      const argv = ['with space', `"double" 'single'`, 'line1\nline2', '$(touch /workspace/pwned)', '`id`', '; rm -rf /', 'ÿ é 😀 \u0001\t', '', '-n', '*'];
      const script = 'printf "%s\\0" "$@"; printf "cwd=%s\\0" "$(pwd)"; cat /proc/$$/environ; printf "stdin=%s\\0" "$(cat)"';
      const r = await fresh.run({
        argv: ['/bin/bash', '-c', script, 'prog', ...argv],
        env: { PER_RUN: 'a b\nc', QUOTE: `it's "$HOME"` },
        cwd: '/tmp',
        stdin: 'from stdin\n',
      });
      expect(r.ended).toBe('exited');
      expect(r.exitCode).toBe(0);
      const fields = r.stdout.toString('utf8').split('\0').slice(0, -1);
      expect(fields.slice(0, argv.length)).toEqual(argv);
      expect(fields[argv.length]).toBe('cwd=/tmp');
      const env = fields.slice(argv.length + 1, -1).sort();
      expect(env).toEqual(['GIVEN=yes', 'PATH=/usr/bin:/bin', 'PER_RUN=a b\nc', 'PWD=/tmp', `QUOTE=it's "$HOME"`]);
      expect(fields.at(-1)).toBe('stdin=from stdin');
      expect(await readdir(fresh.workspaceDir)).toEqual([]);
    } finally {
      await fresh.dispose();
    }
  });

  it('is the waiter itself: the run is an exec in the pre-started process, under the same hardening', async () => {
    const sb = await prestarted();
    try {
      const proc = (await spawnOnWaiter(sb, { argv: ['/bin/sh', '-c', 'echo ready; exec cat'] })) as SandboxProcess & { waiting: number[] };
      await waitFor(proc.stdout, 'ready');
      // sh says ready, then execs cat: wait for that exec, in one of the pids that were the waiter.
      const catPid = await waitUntil(async () => {
        const cmdlines = await Promise.all(proc.waiting.map((p) => readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')));
        const i = cmdlines.findIndex((c) => c === 'cat\0');
        return i < 0 ? undefined : proc.waiting[i]!;
      }, 20_000, 'the waiter to become cat');
      const status = await readFile(`/proc/${catPid}/status`, 'utf8');
      // A non-root host uid, no capabilities, every namespace its own.
      expect(Number(/^Uid:\s+(\d+)/m.exec(status)![1])).toBe(sb.hostUid);
      expect(/^CapEff:\s+(\w+)/m.exec(status)![1]).toBe('0000000000000000');
      expect(/^NoNewPrivs:\s+(\d)/m.exec(status)?.[1] ?? '1').toBe('1');
      for (const k of ['user', 'pid', 'net', 'ipc', 'uts', 'cgroup', 'mnt']) {
        expect(await readlink(`/proc/${catPid}/ns/${k}`)).not.toBe(await readlink(`/proc/self/ns/${k}`));
      }
      // The spec pipe is closed before the exec: the program holds only its stdio (and nothing on fd 4).
      expect(await readdir(`/proc/${catPid}/fd`).then((fds) => fds.includes('4'))).toBe(false);
      proc.stdin.end('bye');
      expect(await waitFor(proc.stdout, 'bye')).toBe('bye');
      expect(await proc.exited).toMatchObject({ code: 0 });
    } finally {
      await sb.dispose();
    }
  });

  it('never puts a secret env value on a command line, though the program holds it', async () => {
    const secret = `sk-prestart-${process.pid}-${Date.now()}-value`;
    const sb = await prestarted();
    try {
      const proc = await spawnOnWaiter(sb, { argv: ['/bin/sh', '-c', 'echo ready; exec cat'], env: { API_KEY: secret } });
      await waitFor(proc.stdout, 'ready');
      expect(await hostProcessesHolding(secret, 'cmdline')).toEqual([]);
      // It did arrive: the program's environment has it.
      expect((await hostProcessesHolding(secret, 'environ')).length).toBe(1);
      proc.stdin.end();
      await proc.exited;
    } finally {
      await sb.dispose();
    }
  });

  it('reports exit codes, signals and a missing program or cwd as a bwrap-started run does', async () => {
    const sb = await prestarted();
    try {
      const r = await sb.run({ argv: ['/bin/sh', '-c', 'echo out; echo err >&2; exit 7'] });
      expect(r).toMatchObject({ exitCode: 7, ended: 'exited' });
      expect(r.stdout.toString()).toBe('out\n');
      expect(r.stderr.toString()).toBe('err\n');
    } finally {
      await sb.dispose();
    }
    const killed = await prestarted();
    try {
      const r = await killed.run({ argv: ['/bin/sh', '-c', 'kill -9 $$'] });
      // bwrap reports a signalled child as 128 + signo, as for any bwrap run.
      expect(r.exitCode).toBe(128 + 9);
    } finally {
      await killed.dispose();
    }
    for (const request of [{ argv: ['no-such-program'] }, { argv: ['true'], cwd: '/no/such/dir' }]) {
      const sb2 = await prestarted();
      const plain = (await driver.create(spec(sandboxId('plain'), { env: { PATH: '/usr/bin:/bin', GIVEN: 'yes' } }))) as BwrapSandbox;
      try {
        const a = await sb2.run(request).then((x) => x, (e: Error) => e);
        const b = await plain.run(request).then((x) => x, (e: Error) => e);
        expect(a).toBeInstanceOf(Error);
        expect(b).toBeInstanceOf(Error);
        expect((a as Error).message.replace(sb2.id, 'ID')).toBe((b as Error).message.replace(plain.id, 'ID'));
      } finally {
        await sb2.dispose();
        await plain.dispose();
      }
    }
  });

  it('kills the whole tree at the wall time, and on cancel within a second', async () => {
    const sb = await prestarted();
    try {
      let pids: number[] = [];
      const r = await sb.run({
        argv: ['/bin/sh', '-c', 'sleep 600 & sleep 600 & echo started; wait'],
        timeoutMs: 1500,
        onOutput: async () => {
          pids = await sb.hostPids();
        },
      });
      expect(r.ended).toBe('wall_time');
      expect(pids.length).toBeGreaterThanOrEqual(4);
      for (const pid of pids) expect(await isAlive(pid)).toBe(false);
    } finally {
      await sb.dispose();
    }
    const cancelled = await prestarted();
    try {
      const ac = new AbortController();
      let pids: number[] = [];
      let abortedAt = 0;
      const r = await cancelled.run({
        argv: ['/bin/sh', '-c', 'sleep 600 & (sleep 600; echo never) & echo started; wait'],
        signal: ac.signal,
        onOutput: async () => {
          pids = await cancelled.hostPids();
          abortedAt = Date.now();
          ac.abort();
        },
      });
      expect(r.ended).toBe('cancelled');
      expect(Date.now() - abortedAt).toBeLessThan(1000);
      expect(pids.length).toBeGreaterThanOrEqual(4);
      for (const pid of pids) expect(await isAlive(pid)).toBe(false);
    } finally {
      await cancelled.dispose();
    }
  });

  it('keeps memory and process limits: the waiter joined the cgroups before anything ran', async () => {
    const sb = (await driver.create(spec(sandboxId('prelim'), { limits: { memoryBytes: 96 * 1024 * 1024, maxProcesses: 64 } }))) as BwrapSandbox;
    await sb.prestart();
    try {
      const r = await sb.run({ argv: ['/usr/bin/python3', '-c', 'b = []\nwhile True: b.append(b"x" * (8 << 20))'] });
      expect(r.ended).toBe('memory');
    } finally {
      await sb.dispose();
    }
    const bomb = (await driver.create(spec(sandboxId('prebomb'), { limits: { maxProcesses: 64 } }))) as BwrapSandbox;
    await bomb.prestart();
    try {
      const r = await bomb.run({ argv: ['/bin/bash', '-c', 'bomb() { bomb | bomb & }; bomb; sleep 600'] });
      expect(r.ended).toBe('processes');
    } finally {
      await bomb.dispose();
    }
  });

  it('serves only the first run; later runs and an env bash would change take a new bwrap process', async () => {
    const sb = await prestarted();
    try {
      // SHLVL is a name bash manages itself: the waiter hands this run back to bwrap, which sets it verbatim.
      const first = await sb.run({ argv: ['/usr/bin/env'], env: { SHLVL: '7' } });
      expect(first.stdout.toString().trim().split('\n').sort()).toEqual(['GIVEN=yes', 'PATH=/usr/bin:/bin', 'PWD=/workspace', 'SHLVL=7']);
      const second = await sb.run({ argv: ['/bin/sh', '-c', 'echo second'] });
      expect(second.stdout.toString()).toBe('second\n');
    } finally {
      await sb.dispose();
    }
  });

  it('a waiter never used is killed at dispose: no process, cgroup, mount or folder is left', async () => {
    const sb = await prestarted();
    const pids = await waiterRunning(sb);
    const sandboxDir = path.dirname(sb.workspaceDir);
    await sb.dispose();
    for (const pid of pids) expect(await isAlive(pid)).toBe(false);
    expect(await hostProcessesHolding(sandboxDir, 'cmdline')).toEqual([]);
    expect(await readFile('/proc/self/mounts', 'utf8')).not.toContain(sb.workspaceDir);
    await expect(stat(sandboxDir)).rejects.toThrow(/ENOENT/);
    const cgroupDirs = ['/sys/fs/cgroup', '/sys/fs/cgroup/pids', '/sys/fs/cgroup/memory', '/sys/fs/cgroup/cpu'].map((r) =>
      path.join(r, `sandbox-runner-test-${process.pid}-p`, sb.id),
    );
    for (const d of cgroupDirs) await expect(stat(d)).rejects.toThrow(/ENOENT/);
  });
});

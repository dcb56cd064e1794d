import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BwrapDriver, hostUidFor } from '../../../src/sandbox/bwrap/bwrap-driver.js';
import type { BwrapSandbox } from '../../../src/sandbox/bwrap/bwrap-sandbox.js';
import type { Sandbox } from '../../../src/sandbox/driver.js';
import { IMAGES_DIR, KEYRING_PROBE, SURFACE_PROBE, sandboxId, spec, tempDir } from './helpers.js';

const REPO = path.resolve(import.meta.dirname, '../../..');

// What a hostile command could reach past the hardening points of
// bwrap-hardening.test.ts: kernel state shared across namespaces, fds
// inherited from whoever started the runner, /dev, and what two live
// sandboxes could share. Each from inside a real sandbox, the runner as root.
describe('bwrap containment', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let driver: BwrapDriver;
  let a: BwrapSandbox;
  let b: Sandbox;

  beforeAll(async () => {
    work = await tempDir('sr-bwrap-cont-');
    driver = new BwrapDriver({ imagesDir: IMAGES_DIR, workRoot: path.join(work.dir, 'sandboxes'), cgroupParent: `sandbox-runner-test-${process.pid}-c` });
    a = (await driver.create(spec(sandboxId('ca'), { limits: { workspaceBytes: 8 * 1024 * 1024 } }))) as BwrapSandbox;
    b = await driver.create(spec(sandboxId('cb')));
  });

  afterAll(async () => {
    await a?.dispose();
    await b?.dispose();
    await driver?.cleanupOrphans({ parentToo: true });
    await work?.remove();
  });

  const sh = async (sb: Sandbox, script: string) => {
    const r = await sb.run({ argv: ['/bin/bash', '-c', script] });
    return { ...r, out: r.stdout.toString().trim(), err: r.stderr.toString().trim() };
  };

  it("refuses the kernel keyring calls: keyrings are not namespaced, and the runner's session keyring is inherited", async () => {
    const expected = ['add_key -1 EPERM', 'request_key -1 EPERM', 'keyctl -1 EPERM'];
    expect((await a.run({ argv: ['python3', '-c', KEYRING_PROBE] })).stdout.toString().trim().split('\n')).toEqual(expected);
    // The same for a spare's pre-started process (started by the spawner helper).
    const spare = (await driver.create(spec(sandboxId('ck')))) as BwrapSandbox;
    try {
      await spare.prestart();
      expect(spare.waiterStart).toBeDefined();
      expect((await spare.run({ argv: ['python3', '-c', KEYRING_PROBE] })).stdout.toString().trim().split('\n')).toEqual(expected);
    } finally {
      await spare.dispose();
    }
  });

  it('refuses io_uring, userfaultfd and perf_event_open, as Docker does: large kernel attack surfaces no tool needs', async () => {
    const expected = ['io_uring_setup -1 EPERM', 'io_uring_enter -1 EPERM', 'io_uring_register -1 EPERM', 'userfaultfd -1 EPERM', 'perf_event_open -1 EPERM'];
    expect((await a.run({ argv: ['python3', '-c', SURFACE_PROBE] })).stdout.toString().trim().split('\n')).toEqual(expected);
    // A pre-started process gets the same filter from the spawner helper.
    const spare = (await driver.create(spec(sandboxId('cu')))) as BwrapSandbox;
    try {
      await spare.prestart();
      expect(spare.waiterStart).toBeDefined();
      expect((await spare.run({ argv: ['python3', '-c', SURFACE_PROBE] })).stdout.toString().trim().split('\n')).toEqual(expected);
    } finally {
      await spare.dispose();
    }
  });

  it('gives two live sandboxes whose ids hash to the same host uid different uids (per-user kernel counts stay apart)', async () => {
    // Two ids on one uid, found by hashing as the driver does (a few thousand tries).
    const seen = new Map<number, string>();
    let pair: [string, string] | undefined;
    for (let n = 0; !pair; n++) {
      const id = `uid-${process.pid}-${n}`;
      const uid = hostUidFor(true, undefined, id)!;
      const other = seen.get(uid);
      if (other) pair = [other, id];
      else seen.set(uid, id);
    }
    const x = (await driver.create(spec(pair[0]))) as BwrapSandbox;
    const y = (await driver.create(spec(pair[1]))) as BwrapSandbox;
    try {
      expect(x.hostUid).toBe(hostUidFor(true, undefined, pair[0]));
      expect(y.hostUid).not.toBe(x.hostUid);
      // What each sandbox writes belongs to its own uid on the host.
      for (const sb of [x, y]) await sh(sb, 'echo mine > /workspace/f');
      const owners = await Promise.all([x, y].map(async (sb) => (await stat(path.join(sb.workspaceDir, 'f'))).uid));
      expect(owners).toEqual([x.hostUid, y.hostUid]);
    } finally {
      await x.dispose();
      await y.dispose();
    }
  });

  it('keeps /dev read-only and /dev/shm within the size of /tmp', async () => {
    // a's /tmp and /dev/shm are 8 MB each (its workspace size); 12 MB are tried.
    const r = await sh(a, 'touch /dev/planted 2>&1; for i in 1 2 3; do head -c 4M /dev/zero > /dev/shm/f$i 2>&1 || echo full; done; du -sk /dev/shm | cut -f1; rm -f /dev/shm/f*');
    const lines = r.out.split('\n');
    expect(lines[0]).toMatch(/Read-only file system/);
    expect(lines).toContain('full');
    expect(Number(lines.at(-1))).toBeLessThanOrEqual(8 * 1024);
    // POSIX shared memory and semaphores still work there.
    expect((await sh(a, 'python3 -c "import multiprocessing as m; l = m.Lock(); l.acquire(); print(\'locked\')"')).out).toBe('locked');
  });

  it('counts a workspace file deleted while held open against the workspace size', async () => {
    // a's workspace is 8 MB: 6 MB held open after rm, then 6 MB more.
    const r = await sh(a, 'exec 7>/workspace/held; head -c 6M /dev/zero >&7; rm /workspace/held; head -c 6M /dev/zero > /workspace/more 2>/dev/null || echo full; exec 7>&-; rm -f /workspace/more');
    expect(r.out).toBe('full');
  });

  it("shows none of the host's kernel controls: sysrq, /proc/sys, kcore, /sys, cgroup files", async () => {
    const r = await sh(
      a,
      [
        'echo h > /proc/sysrq-trigger 2>/dev/null && echo SYSRQ',
        'echo evil > /proc/sys/kernel/hostname 2>/dev/null && echo SYSCTL',
        'head -c1 /proc/kcore >/dev/null 2>&1 && echo KCORE',
        'ls -A /sys | head -1',
        'mount -t cgroup -o memory none /mnt 2>/dev/null && echo CGROUP',
        'cut -d: -f3 /proc/self/cgroup | sort -u',
        'echo end',
      ].join('; '),
    );
    // The cgroup namespace shows the sandbox's own cgroups as the root: no path to a parent to climb to.
    expect(r.out.split('\n')).toEqual(['/', 'end']);
  });

  it("holds nothing of the runner's environment in bwrap's own process (pid 1), which it can read", async () => {
    process.env.RUNNER_ONLY_MARKER = 'runner-side-value';
    try {
      const fresh = (await driver.create(spec(sandboxId('ce')))) as BwrapSandbox;
      try {
        await fresh.prestart();
        const r = await sh(fresh, 'tr "\\0" "\\n" < /proc/1/environ; tr "\\0" "\\n" < /proc/self/environ');
        expect(r.out).toContain('PATH=');
        expect(r.out).not.toContain('runner-side-value');
      } finally {
        await fresh.dispose();
      }
      const r = await sh(a, 'tr "\\0" "\\n" < /proc/1/environ');
      // The wrapper's PATH, and PWD where a shell wrapper set it; nothing else.
      for (const name of r.out.split('\n').map((l) => l.split('=')[0])) expect(['PATH', 'PWD']).toContain(name);
    } finally {
      delete process.env.RUNNER_ONLY_MARKER;
    }
  });

  it('shares no SysV IPC, POSIX shm or abstract unix socket with another live sandbox', async () => {
    const setup = [
      'ipcmk -M 4096 >/dev/null && ipcmk -Q >/dev/null',
      'echo b > /dev/shm/from-b',
      // Each process of a bwrap sandbox has namespaces of its own: b's objects are seen from this one.
      'ipcs -m | grep -c 4096; ls /dev/shm',
      // Listen on an abstract socket, say so, and stay until stdin closes.
      'exec python3 -c "import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(b\'\\0sandbox-b\'); s.listen(); print(\'ready\', flush=True); sys.stdin.read()"',
    ].join('; ');
    const holder = await b.spawn({ argv: ['/bin/bash', '-c', setup] });
    try {
      let seen = '';
      holder.stdout.on('data', (c: Buffer) => (seen += c.toString()));
      while (!seen.includes('ready')) await Promise.race([once(holder.stdout, 'data'), holder.exited.then(() => { throw new Error(`b ended before it was ready: ${seen}`); })]);
      // b sees its own objects; a, at the same time, sees none of them.
      expect(seen).toBe('1\nfrom-b\nready\n');
      const r = await sh(
        a,
        [
          'ipcs -m -q | grep -cE "^0x"',
          'ls -A /dev/shm | head -1',
          'grep -c sandbox-b /proc/net/unix',
          'python3 -c "import socket; s = socket.socket(socket.AF_UNIX); s.connect(b\'\\0sandbox-b\')" 2>&1 | tail -1',
        ].join('; '),
      );
      expect(r.out.split('\n')).toEqual(['0', '0', 'ConnectionRefusedError: [Errno 111] Connection refused']);
    } finally {
      holder.stdin.end();
      holder.kill();
      await holder.exited.catch(() => undefined);
    }
  });

  it('passes no file descriptor the runner inherited into a sandbox, fresh or pre-started', async () => {
    // A runner started by a shell that left an open socket at fd 40 (as a
    // supervisor or CI job may). Node marks fds up to 15 close-on-exec at
    // start (uv_disable_stdio_inheritance), not above. Runs the built driver
    // (dist/, as the runner does).
    const script = `
      import { BwrapDriver } from ${JSON.stringify(path.join(REPO, 'dist/src/sandbox/bwrap/bwrap-driver.js'))};
      import { DEFAULT_LIMITS } from ${JSON.stringify(path.join(REPO, 'dist/src/sandbox/driver.js'))};
      const [workRoot, cgroupParent, id] = process.argv.slice(1);
      const driver = new BwrapDriver({ imagesDir: ${JSON.stringify(IMAGES_DIR)}, workRoot, cgroupParent });
      const mk = (n) => driver.create({ id: id + '-' + n, image: 'base', limits: { ...DEFAULT_LIMITS, wallTimeMs: 30000 }, network: { mode: 'none' }, env: { PATH: '/usr/bin:/bin' } });
      const probe = ['/bin/bash', '-c', 'echo written-from-inside >&40; ls /proc/self/fd | sort -n | tr "\\\\n" " "'];
      const out = {};
      const fresh = await mk('f');
      out.fresh = (await fresh.run({ argv: probe })).stdout.toString();
      const spare = await mk('s');
      await spare.prestart();
      out.prestarted = (await spare.run({ argv: probe })).stdout.toString();
      await fresh.dispose();
      await spare.dispose();
      await driver.cleanupOrphans({ parentToo: true });
      console.log(JSON.stringify(out));
    `;
    const argv = [process.execPath, '--input-type=module', '-e', script, path.join(work.dir, 'child-sandboxes'), `sandbox-runner-test-${process.pid}-cf`, sandboxId('cf')];
    const child = spawn('/bin/bash', ['-c', 'exec "$@" 40>&3 3>&-', 'bash', ...argv], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let leaked = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdio[3]!.on('data', (c: Buffer) => (leaked += c.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code, stderr).toBe(0);
    const out = JSON.parse(stdout) as { fresh: string; prestarted: string };
    // 0-2 and the listing's own directory fd (3), nothing else.
    expect(out.fresh.trim()).toBe('0 1 2 3');
    expect(out.prestarted.trim()).toBe('0 1 2 3');
    expect(leaked).toBe('');
  });
});

import { describe, expect, it } from 'vitest';
import { buildBwrapArgs, wrapInCgroup } from '../../../src/sandbox/bwrap/bwrap-args.js';

const input = {
  bwrapPath: 'bwrap',
  root: [
    { name: 'usr', hostPath: '/img/usr' },
    { name: 'bin', symlink: 'usr/bin' },
  ],
  workspaceDir: '/work/ws',
  tmpBytes: 64 * 1024 * 1024,
  roBinds: [] as Array<[string, string]>,
  shareNet: false,
  hostname: 'sandbox',
  env: { A: '1; rm -rf /' },
  cwd: '/workspace',
  argv: ['sh', '-c', 'echo $A'],
  uid: 1000,
  gid: 1000,
};

describe('buildBwrapArgs', () => {
  it('carries every hardening flag of issue 3', () => {
    const a = buildBwrapArgs(input);
    for (const flag of ['--unshare-user', '--unshare-pid', '--unshare-net', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup', '--die-with-parent', '--new-session', '--clearenv', '--disable-userns']) {
      expect(a).toContain(flag);
    }
    expect(a.join(' ')).toContain('--cap-drop ALL');
    // Argument by argument: `--remount-ro /dev` must not pass for `--remount-ro /`.
    expect(a.join('\n')).toContain('--remount-ro\n/\n');
    expect(a.join(' ')).toContain('--ro-bind /img/usr /usr');
    expect(a.join(' ')).toContain('--bind /work/ws /workspace');
    expect(a.slice(-4)).toEqual(['--', 'sh', '-c', 'echo $A']);
  });

  it('binds the image as / in one read-only mount when given rootDir', () => {
    const a = buildBwrapArgs({ ...input, rootDir: '/img' }).join(' ');
    expect(a).toContain('--ro-bind /img /');
    expect(a).not.toMatch(/--tmpfs \/ /);
    expect(buildBwrapArgs({ ...input, rootDir: '/img' }).join('\n')).not.toContain('--remount-ro\n/\n');
  });

  it('makes /dev read-only with a /dev/shm capped as /tmp is, and names the seccomp fd when given', () => {
    const a = buildBwrapArgs({ ...input, tmpBytes: 8 * 1024 * 1024, seccompFd: 6 }).join(' ');
    expect(a).toContain('--dev /dev --remount-ro /dev --perms 1777 --size 8388608 --tmpfs /dev/shm');
    expect(a).toContain('--seccomp 6');
    expect(buildBwrapArgs(input)).not.toContain('--seccomp');
  });

  it('keeps the network namespace only when told to', () => {
    expect(buildBwrapArgs({ ...input, shareNet: true })).not.toContain('--unshare-net');
  });

  it('passes values as single argv entries, never through a shell', () => {
    const a = buildBwrapArgs(input);
    const i = a.indexOf('--setenv');
    expect(a.slice(i, i + 3)).toEqual(['--setenv', 'A', '1; rm -rf /']);
    const w = wrapInCgroup(['/cg/a/cgroup.procs', '/cg/b/cgroup.procs'], ['bwrap', '--', 'x; y']);
    expect(w.slice(0, 2)).toEqual(['/bin/sh', '-c']);
    expect(w.slice(3)).toEqual(['sandbox-cgroup-wrapper', '/cg/a/cgroup.procs', '/cg/b/cgroup.procs', '--', 'bwrap', '--', 'x; y'].slice(0));
    expect(w[2]).toContain('echo $$ >');
  });

  it('joins v1 cgroups by moving the wrapper thread itself (0 into tasks)', () => {
    const w = wrapInCgroup(['/cg/a/tasks'], ['bwrap'], 'current-thread');
    expect(w[2]).toContain('echo 0 >');
    expect(w.slice(3)).toEqual(['sandbox-cgroup-wrapper', '/cg/a/tasks', '--', 'bwrap']);
  });
});

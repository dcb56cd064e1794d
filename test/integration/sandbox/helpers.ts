import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { DEFAULT_LIMITS, type SandboxLimits, type SandboxSpec } from '../../../src/sandbox/driver.js';

export const IMAGES_DIR = path.resolve(import.meta.dirname, '../../../sandbox-images');

let counter = 0;
/** A sandbox id unique to this test process. */
export function sandboxId(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}

export type SpecOverrides = Partial<Omit<SandboxSpec, 'limits'>> & { limits?: Partial<SandboxLimits> };

export function spec(id: string, overrides: SpecOverrides = {}): SandboxSpec {
  return {
    id,
    image: overrides.image ?? 'base',
    limits: { ...DEFAULT_LIMITS, wallTimeMs: 30_000, memoryBytes: 256 * 1024 * 1024, ...overrides.limits },
    network: overrides.network ?? { mode: 'none' },
    env: overrides.env ?? { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/workspace' },
    ...(overrides.files ? { files: overrides.files } : {}),
  };
}

/** A pino logger whose lines are kept in `lines`, for asserting warnings. */
export function captureLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

export async function tempDir(prefix: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  // Sandboxes run as their own host uid: the way down to their workspaces must be traversable.
  await chmod(dir, 0o711);
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Whether a host pid is still a live process (zombies count as gone). */
export async function isAlive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!stat) return false;
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/** Every host pid whose command line or environment holds `needle`. */
export async function hostProcessesHolding(needle: string, file: 'cmdline' | 'environ'): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const text = await readFile(`/proc/${name}/${file}`).catch(() => Buffer.alloc(0));
    if (text.includes(needle)) found.push(Number(name));
  }
  return found;
}

/**
 * The calls the seccomp filter refuses for their attack surface, made from
 * inside with ctypes: each line `<call> <result> <errno name>`. Without the
 * filter, on a host that allows them, none says EPERM (io_uring_setup and
 * userfaultfd give an fd, the others EBADF or EINVAL for their bad arguments).
 */
export const SURFACE_PROBE = `
import ctypes, errno, platform
nrs = {'x86_64': (425, 426, 427, 323, 298), 'aarch64': (425, 426, 427, 282, 241)}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
def show(name, r):
    print(name, r if r < 0 else 'fd', errno.errorcode.get(ctypes.get_errno(), '-') if r < 0 else 'ok')
params = ctypes.create_string_buffer(120)
attr = ctypes.create_string_buffer(128)
show('io_uring_setup', libc.syscall(nrs[0], 1, params))
show('io_uring_enter', libc.syscall(nrs[1], -1, 0, 0, 0, None, 0))
show('io_uring_register', libc.syscall(nrs[2], -1, 0, None, 0))
show('userfaultfd', libc.syscall(nrs[3], 1))
show('perf_event_open', libc.syscall(nrs[4], attr, 0, -1, -1, 0))
`;

/**
 * The kernel keyring calls, made from inside with ctypes (no keyutils in the
 * image): each line `<call> <result> <errno name>`. Numbers per ABI.
 */
export const KEYRING_PROBE = `
import ctypes, errno, platform
nrs = {'x86_64': (248, 249, 250), 'aarch64': (217, 218, 219)}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
def show(name, r):
    print(name, r, errno.errorcode.get(ctypes.get_errno(), '-') if r < 0 else 'ok')
show('add_key', libc.syscall(nrs[0], b'user', b'left-by-a-sandbox', b'x', 1, -3))
show('request_key', libc.syscall(nrs[1], b'user', b'runner-key', None, -3))
show('keyctl', libc.syscall(nrs[2], 0, -3, 0))
`;

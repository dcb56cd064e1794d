import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { disableCoreDumps, readCoreLimit } from '../../../src/credentials/core-dumps.js';
import { checkSecretFile, checkStateDir, writeFileAtomic } from '../../../src/credentials/key-files.js';
import { isRunnerError } from '../../../src/util/errors.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'keyfiles-'));
  await chmod(dir, 0o700);
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function insecure(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isRunnerError(err, 'state_insecure'), String(err)).toBe(true);
  return (err as Error).message;
}

describe('key-file hygiene', () => {
  it('accepts a 0600 file of ours and a 0700 directory', async () => {
    const key = join(dir, 'identity.key');
    await writeFileAtomic(key, 'k'.repeat(32));
    expect((await stat(key)).mode & 0o777).toBe(0o600);
    expect(await readFile(key, 'utf8')).toBe('k'.repeat(32));
    await checkSecretFile(key);
    await checkStateDir(dir, { secretFiles: ['identity.key', 'absent.key'] });
  });

  it('refuses a key readable by group or others, naming the chmod', async () => {
    const key = join(dir, 'identity.key');
    await writeFile(key, 'x', { mode: 0o600 });
    await chmod(key, 0o640);
    expect(await insecure(checkSecretFile(key))).toBe(`${key} is accessible by group (mode 640); run chmod 600 ${key}`);
    await chmod(key, 0o604);
    expect(await insecure(checkStateDir(dir, { secretFiles: [key] }))).toContain('accessible by others');
  });

  it('refuses a key owned by another user, naming the chown', async () => {
    const key = join(dir, 'identity.key');
    await writeFile(key, 'x', { mode: 0o600 });
    await chown(key, 65534, 65534);
    expect(await insecure(checkSecretFile(key))).toContain(`run chown ${process.getuid!()} ${key}`);
    // The check runs against the uid it is told to expect.
    await checkSecretFile(key, { uid: 65534 });
  });

  it('refuses symlinks, for files and for the state directory', async () => {
    const real = join(dir, 'real.key');
    await writeFile(real, 'x', { mode: 0o600 });
    await symlink(real, join(dir, 'link.key'));
    expect(await insecure(checkSecretFile(join(dir, 'link.key')))).toContain('is a symlink');
    await mkdir(join(dir, 'state'), { mode: 0o700 });
    await symlink(join(dir, 'state'), join(dir, 'state-link'));
    expect(await insecure(checkStateDir(join(dir, 'state-link')))).toContain('is a symlink');
  });

  it('refuses an open state directory and an open vault file inside it', async () => {
    await chmod(dir, 0o750);
    expect(await insecure(checkStateDir(dir))).toContain(`run chmod 700 ${dir}`);
    await chmod(dir, 0o700);
    await mkdir(join(dir, 'vault'), { mode: 0o700 });
    await writeFile(join(dir, 'vault', 'X.json'), '{}', { mode: 0o644 });
    expect(await insecure(checkStateDir(dir))).toContain(`chmod 600 ${join(dir, 'vault', 'X.json')}`);
  });

  it('says when a file is missing', async () => {
    const err = await checkSecretFile(join(dir, 'nope')).catch((e: unknown) => e);
    expect(isRunnerError(err, 'state_missing')).toBe(true);
  });
});

describe('core dumps', () => {
  it('disables core dumps of a process with prlimit and confirms it from /proc', async () => {
    // A child process of ours stands in for the daemon: this test must not change the test runner itself.
    const child = execa('sleep', ['600'], { reject: false });
    try {
      await execa('prlimit', ['--pid', String(child.pid), '--core=1000000:unlimited']);
      expect((await readCoreLimit(child.pid!)).disabled).toBe(false);
      const result = await disableCoreDumps({ pid: child.pid! });
      expect(result).toMatchObject({ soft: 0, hard: 0, disabled: true });
    } finally {
      child.kill('SIGKILL');
      await child;
    }
  });

  it('warns and reports the limit when prlimit is missing', async () => {
    const child = execa('sleep', ['600'], { reject: false });
    const warnings: string[] = [];
    const logger = { warn: (_o: unknown, msg?: string) => warnings.push(String(msg ?? _o)) } as never;
    try {
      await execa('prlimit', ['--pid', String(child.pid), '--core=4096:unlimited']);
      const result = await disableCoreDumps({ pid: child.pid!, prlimitPath: join(dir, 'no-prlimit'), logger });
      expect(result?.disabled).toBe(false);
      expect(warnings.join('\n')).toMatch(/LimitCORE=0/);
    } finally {
      child.kill('SIGKILL');
      await child;
    }
  });
});

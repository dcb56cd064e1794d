import { constants } from 'node:fs';
import { lstat, mkdir, open, readFile, rename, chmod, unlink } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { RunnerError } from '../util/errors.js';

/**
 * Creates the state directory (0700) or checks an existing one: it must be a
 * real directory, owned by this user, not readable by group or others.
 */
export async function ensureStateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  if (st.isSymbolicLink() || !st.isDirectory()) {
    throw new RunnerError('state_insecure', `state dir ${dir} is not a plain directory; point --state-dir at a real directory`);
  }
  if (process.getuid && st.uid !== process.getuid()) {
    throw new RunnerError('state_insecure', `state dir ${dir} is owned by uid ${st.uid}; run chown ${process.getuid()} ${dir}`);
  }
  if ((st.mode & 0o077) !== 0) {
    throw new RunnerError(
      'state_insecure',
      `state dir ${dir} is accessible by group or others (mode ${(st.mode & 0o777).toString(8)}); run chmod 700 ${dir}`,
    );
  }
}

/**
 * Writes a file atomically with mode 0600: a temporary file in the same
 * directory, fsync, rename, then fsync of the directory. A crash leaves the
 * old file or the new one, never a torn one.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await chmod(tmp, mode);
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await syncDir(path.dirname(file));
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Reads a secret file, refusing one that is a symlink, owned by another user,
 * or readable by group or others; the error names the file and the fix.
 */
export async function readSecretFile(file: string): Promise<Buffer> {
  const st = await lstat(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!st) throw new RunnerError('state_missing', `${file} does not exist`);
  if (st.isSymbolicLink()) throw new RunnerError('state_insecure', `${file} is a symlink; replace it with the real file`);
  if (process.getuid && st.uid !== process.getuid()) {
    throw new RunnerError('state_insecure', `${file} is owned by uid ${st.uid}; run chown ${process.getuid()} ${file}`);
  }
  if ((st.mode & 0o077) !== 0) {
    throw new RunnerError(
      'state_insecure',
      `${file} is readable by group or others (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 ${file}`,
    );
  }
  return readFile(file);
}

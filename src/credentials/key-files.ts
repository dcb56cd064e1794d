import { lstat, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { RunnerError } from '../util/errors.js';

/** Options of the hygiene checks. */
export interface KeyFileCheckOptions {
  /** The user that must own the file; default the current process's uid. */
  uid?: number;
}

function expectedUid(options: KeyFileCheckOptions): number | undefined {
  return options.uid ?? process.getuid?.();
}

/**
 * Checks a key or vault file before the daemon trusts it: it must be a regular
 * file (not a symlink, which could point anywhere), owned by the daemon's user
 * and readable by nobody else.
 * @throws RunnerError `state_insecure` naming the file and the command that fixes it;
 *   `state_missing` when it does not exist.
 */
export async function checkSecretFile(path: string, options: KeyFileCheckOptions = {}): Promise<void> {
  const st = await lstatOrMissing(path, 'file');
  if (st.isSymbolicLink()) {
    throw new RunnerError(
      'state_insecure',
      `${path} is a symlink; replace it with a regular file (cp --remove-destination "$(readlink -f ${path})" ${path}) and chmod 600 it`,
    );
  }
  if (!st.isFile()) {
    throw new RunnerError('state_insecure', `${path} is not a regular file; remove it and let sandbox-runner create it again`);
  }
  checkOwnerAndMode(path, st, 0o600, options);
}

/**
 * Checks the state directory: a real directory (not a symlink), owned by the
 * daemon's user, closed to group and others; then the same for its `vault/`
 * directory and each file in it, and for `secretFiles` (absolute, or relative
 * to `dir`) when they exist.
 * @throws RunnerError `state_insecure` naming the path and the fix; `state_missing`.
 */
export async function checkStateDir(
  dir: string,
  options: KeyFileCheckOptions & { secretFiles?: string[] } = {},
): Promise<void> {
  await checkDirectory(dir, options);
  const vaultDir = join(dir, 'vault');
  if (await exists(vaultDir)) {
    await checkDirectory(vaultDir, options);
    for (const name of await readdir(vaultDir)) await checkSecretFile(join(vaultDir, name), options);
  }
  for (const file of options.secretFiles ?? []) {
    const path = file.startsWith('/') ? file : join(dir, file);
    if (await exists(path)) await checkSecretFile(path, options);
  }
}

async function checkDirectory(dir: string, options: KeyFileCheckOptions): Promise<void> {
  const st = await lstatOrMissing(dir, 'directory');
  if (st.isSymbolicLink()) {
    throw new RunnerError(
      'state_insecure',
      `${dir} is a symlink; point the state directory option at the real directory (${'$'}(readlink -f ${dir})) instead`,
    );
  }
  if (!st.isDirectory()) throw new RunnerError('state_insecure', `${dir} is not a directory; remove it or choose another state directory`);
  checkOwnerAndMode(dir, st, 0o700, options);
}

function checkOwnerAndMode(
  path: string,
  st: { uid: number; mode: number },
  wanted: number,
  options: KeyFileCheckOptions,
): void {
  const uid = expectedUid(options);
  if (uid !== undefined && st.uid !== uid) {
    throw new RunnerError(
      'state_insecure',
      `${path} is owned by uid ${st.uid}, not by the runner's user (uid ${uid}); run chown ${uid} ${path}`,
    );
  }
  const open = st.mode & 0o077;
  if (open !== 0) {
    const who = [open & 0o070 ? 'group' : '', open & 0o007 ? 'others' : ''].filter(Boolean).join(' and ');
    throw new RunnerError(
      'state_insecure',
      `${path} is accessible by ${who} (mode ${(st.mode & 0o777).toString(8)}); run chmod ${wanted.toString(8)} ${path}`,
    );
  }
}

async function lstatOrMissing(path: string, what: string) {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new RunnerError('state_missing', `${what} ${path} does not exist; create it (sandbox-runner pair or vault set) or fix the path`);
    }
    throw new RunnerError('io', `cannot read ${path}; check that the runner's user may access it`, { cause: err });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Creates `dir` (and parents) with mode 0700 when missing; an existing one is left as it is. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
}

export { syncDir, writeFileAtomic } from '../util/atomic-file.js';

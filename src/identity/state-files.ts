import { mkdir, readFile } from 'node:fs/promises';
import { checkSecretFile, checkStateDir } from '../credentials/key-files.js';

export { writeFileAtomic } from '../util/atomic-file.js';

/**
 * Creates the state directory (0700) or checks an existing one: it must be a
 * real directory, owned by this user, not open to group or others.
 * @throws RunnerError `state_insecure` naming the path and the fix.
 */
export async function ensureStateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await checkStateDir(dir);
}

/**
 * Reads a secret file, refusing one that is a symlink, owned by another user,
 * or readable by group or others; the error names the file and the fix.
 */
export async function readSecretFile(file: string): Promise<Buffer> {
  await checkSecretFile(file);
  return readFile(file);
}

import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Writes a file atomically with mode 0600 (by default): a temporary file in the
 * same directory, fsync, rename over the target, fsync of the directory. A
 * reader sees the old or the new content, never a torn one, also after a crash
 * or a power loss. With `durable: false` the two fsyncs are left out: still
 * never torn for a crash of the process, but a power loss may lose the write
 * (for data that is diagnostic, not a record anything depends on).
 *
 * Every step goes through libuv's thread pool on purpose: creating a file can
 * wait on the file system's journal for milliseconds while other writers
 * fsync, and that wait must not stop the event loop.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string, mode = 0o600, options: { durable?: boolean } = {}): Promise<void> {
  const durable = options.durable ?? true;
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(tmp, 'wx', mode);
  try {
    await handle.writeFile(data);
    if (durable) await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  if (durable) await syncDir(dir);
}

/** fsync of a directory, so that a rename or a new file survives a power loss. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

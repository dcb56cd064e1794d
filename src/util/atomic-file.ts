import { randomBytes } from 'node:crypto';
import { closeSync, fsync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';

const fsyncAsync = promisify(fsync);

/**
 * Writes a file atomically with mode 0600 (by default): a temporary file in the
 * same directory, fsync, rename over the target, fsync of the directory. A
 * reader sees the old or the new content, never a torn one, also after a crash
 * or a power loss. With `durable: false` the two fsyncs are left out: still
 * never torn for a crash of the process, but a power loss may lose the write
 * (for data that is diagnostic, not a record anything depends on).
 *
 * Open, write, close and rename are synchronous: on small files they are
 * page-cache work of microseconds, where each trip through libuv's thread pool
 * costs far more on a busy host. Only the fsyncs, which wait on the disk, run
 * off the event loop.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string, mode = 0o600, options: { durable?: boolean } = {}): Promise<void> {
  const durable = options.durable ?? true;
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const fd = openSync(tmp, 'wx', mode);
  try {
    for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
    if (durable) await fsyncAsync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  if (durable) await syncDir(dir);
}

/** fsync of a directory, so that a rename or a new file survives a power loss. */
export async function syncDir(dir: string): Promise<void> {
  const fd = openSync(dir, 'r');
  try {
    await fsyncAsync(fd);
  } finally {
    closeSync(fd);
  }
}

import { constants as C, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { RunnerError } from '../../util/errors.js';
import { atDir, ioError, MAX_WALK_DEPTH, readAtMost, type WorkspaceFs } from '../workspace-path.js';
import { TarWriter } from './tar-writer.js';

/** Limits of one download. */
export interface DownloadLimits {
  /** Bytes of archive at most. */
  maxBytes: number;
  /** Entries at most. */
  maxEntries: number;
}

export interface DownloadResult {
  /** The path downloaded, as seen inside the sandbox. */
  shown: string;
  archive: Buffer;
  files: number;
  directories: number;
  symlinks: number;
  /** Sockets, FIFOs and devices found and left out. */
  skipped: number;
}

// O_NONBLOCK: a FIFO planted in the workspace must not hang the walk.
const CHILD_FLAGS = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK;

/**
 * Packs a file or a directory of the workspace into a tar. The requested path
 * may go through symlinks that stay inside the workspace; below it, symlinks
 * are stored as links (their target text), never followed, and every child is
 * opened relative to its parent's fd with O_NOFOLLOW. A directory's contents
 * sit at the archive's root; a file is stored under its own name.
 */
export async function packDownload(ws: WorkspaceFs, path: string, limits: DownloadLimits, signal: AbortSignal): Promise<DownloadResult> {
  const entry = await ws.openExisting(ws.relative(path));
  const shown = ws.display(entry.rel);
  const writer = new TarWriter();
  const result: DownloadResult = { shown, archive: Buffer.alloc(0), files: 0, directories: 0, symlinks: 0, skipped: 0 };
  let entries = 0;
  const tooMany = (): RunnerError =>
    new RunnerError(
      'limit_exceeded',
      `${shown} holds more than ${limits.maxEntries} entries, the download limit; download a subdirectory, or pack it with bash (tar czf) and download that file.`,
    );
  const count = (): void => {
    signal.throwIfAborted();
    if (++entries > limits.maxEntries) throw tooMany();
  };
  const tooLarge = (): RunnerError =>
    new RunnerError(
      'limit_exceeded',
      `${shown} is larger than ${limits.maxBytes} bytes, the download limit; download a subdirectory, or compress it with bash (tar czf) first.`,
    );
  const checkSize = (extra: number): void => {
    if (writer.size + extra > limits.maxBytes) throw tooLarge();
  };

  const addFile = async (handle: FileHandle, name: string, mode: number, mtime: Date, size: number): Promise<void> => {
    count();
    checkSize(size + 1024);
    const { data: body, more } = await readAtMost(handle, Math.max(0, limits.maxBytes - writer.size - 1024));
    if (more) throw tooLarge();
    checkSize(body.length + 1024);
    writer.add({ path: name, type: 'File', mode, mtime, body });
    result.files++;
  };

  const walk = async (dir: FileHandle, prefix: string, depth: number): Promise<void> => {
    if (depth > MAX_WALK_DEPTH) {
      throw new RunnerError(
        'limit_exceeded',
        `${shown} is more than ${MAX_WALK_DEPTH} directories deep, the download limit; download a subdirectory, or pack it with bash (tar czf) and download that file.`,
      );
    }
    const names = await listNames(dir, limits.maxEntries - entries, tooMany);
    for (const name of names) {
      const archived = prefix === '' ? name : `${prefix}/${name}`;
      let child: FileHandle;
      try {
        child = await fsp.open(atDir(dir, name), CHILD_FLAGS);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ELOOP') {
          count();
          const target = await fsp.readlink(atDir(dir, name));
          writer.add({ path: archived, type: 'SymbolicLink', mode: 0o777, mtime: new Date(), linkpath: target });
          result.symlinks++;
        } else if (code === 'ENOENT') {
          // Removed by sandboxed code while we walked: nothing to pack.
        } else if (code === 'ENXIO' || code === 'EACCES') {
          result.skipped++;
        } else {
          throw ioError(err, `${shown}/${archived}`);
        }
        continue;
      }
      try {
        const st = await child.stat();
        if (st.isDirectory()) {
          count();
          writer.add({ path: archived, type: 'Directory', mode: st.mode, mtime: st.mtime });
          result.directories++;
          await walk(child, archived, depth + 1);
        } else if (st.isFile()) {
          await addFile(child, archived, st.mode, st.mtime, st.size);
        } else {
          result.skipped++;
        }
      } finally {
        await child.close();
      }
    }
  };

  try {
    if (entry.kind === 'file') {
      const st = await entry.handle.stat();
      const name = entry.rel.split('/').pop() ?? 'file';
      await addFile(entry.handle, name, st.mode, st.mtime, st.size);
    } else if (entry.kind === 'directory') {
      await walk(entry.handle, '', 1);
    } else {
      throw new RunnerError('invalid_input', `The path ${shown} is not a regular file or directory; only files and directories can be downloaded.`);
    }
  } finally {
    await entry.handle.close();
  }
  result.archive = writer.finish();
  return result;
}

/**
 * The names in `dir`, sorted; read as a stream so a directory of millions of
 * entries costs at most `room` + 1 names before it is refused.
 */
async function listNames(dir: FileHandle, room: number, tooMany: () => Error): Promise<string[]> {
  const names: string[] = [];
  const listing = await fsp.opendir(`/proc/self/fd/${dir.fd}`);
  try {
    for await (const dirent of listing) {
      names.push(dirent.name);
      if (names.length > room) throw tooMany();
    }
  } finally {
    await listing.close().catch(() => undefined);
  }
  return names.sort();
}

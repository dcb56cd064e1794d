import { createHash } from 'node:crypto';
import { constants as C, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { RunnerError } from '../../util/errors.js';
import { atDir, ioError, MAX_WALK_DEPTH, type WorkspaceFs } from '../workspace-path.js';
import { TarFileReader } from './tar-reader.js';
import { entryPath } from './tar-upload.js';
import { TarWriter } from './tar-writer.js';

/**
 * Session checkpoint (a tar of the workspace kept on the runner) and restore.
 *
 * Both run as the runner (root) while the session's own processes can change
 * the workspace, so neither may use a path the kernel resolves through
 * directories sandboxed code controls: a directory swapped for a symlink
 * between a check and a use would make the runner read, write or delete host
 * files (node-tar's pack and extract and fs.rm are path based, and were). Every
 * step here is fd-relative with O_NOFOLLOW, through {@link WorkspaceFs}, so a
 * swap can only redirect the runner to another place inside the same
 * workspace. Symlinks are stored as links and restored as links, never
 * followed; sockets, FIFOs and devices are left out; a file with several
 * names in the workspace is stored once and its other names as hard links to
 * it (a pnpm store would otherwise double on restore).
 */

/**
 * The file or folder name under which a session's checkpoints are kept, for a
 * session or checkpoint id of the control plane's choosing: one id, one name
 * (ids that differ never share a folder) and never `.`, `..` or a path. The
 * earlier mapping (unsafe characters to `_`) kept `..` as is, and closing
 * session `..` removed the folder above the checkpoints: the runner's state
 * directory. Letters, digits, `_` and `-` stay; every other byte becomes `.`
 * and two hex digits; a name that would exceed 200 bytes is a hash.
 */
export function storageName(id: string): string {
  const name = id.replace(/[^A-Za-z0-9_-]/g, (c) =>
    [...Buffer.from(c, 'utf8')].map((b) => `.${b.toString(16).padStart(2, '0')}`).join(''),
  );
  return name.length <= 200 ? name : `h${createHash('sha256').update(id).digest('hex')}`;
}

/** Limits of a checkpoint and of a restore. */
export interface CheckpointLimits {
  /** Bytes of file content at most (the workspace's size limit: more can only be sparse files). */
  maxBytes: number;
  /** Entries at most; default {@link CHECKPOINT_MAX_ENTRIES}. */
  maxEntries?: number;
}

/** Default entry limit of a checkpoint. */
export const CHECKPOINT_MAX_ENTRIES = 1_000_000;

const CHILD_FLAGS = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK;
const CHUNK = 1024 * 1024;
/**
 * Passes over the workspace while emptying it: one is enough unless sandboxed
 * code writes meanwhile, or a tree is deeper than MAX_WALK_DEPTH (each pass takes
 * MAX_WALK_DEPTH more levels of it).
 */
const MAX_CLEAR_PASSES = 16;

function limitError(message: string): RunnerError {
  return new RunnerError('limit_exceeded', message);
}

/** Packs the workspace into tar file `file` (written as `file.partial`, renamed when complete). */
export async function checkpointWorkspace(
  ws: WorkspaceFs,
  file: string,
  limits: CheckpointLimits,
  signal?: AbortSignal,
): Promise<{ entries: number; bytes: number }> {
  const maxEntries = limits.maxEntries ?? CHECKPOINT_MAX_ENTRIES;
  const partial = `${file}.partial`;
  const out = await fsp.open(partial, 'wx', 0o600);
  const writer = new TarWriter();
  const flush = async (): Promise<void> => {
    const buf = writer.take();
    if (buf.length > 0) await out.write(buf);
  };
  let entries = 0;
  let bytes = 0;
  /** First archived name of each file with several names, by dev:ino. */
  const linked = new Map<string, string>();
  const count = (): void => {
    signal?.throwIfAborted();
    if (++entries > maxEntries) {
      throw limitError(`The workspace holds more than ${maxEntries} entries, the checkpoint limit; remove some (build output, caches) and retry.`);
    }
  };

  const addFile = async (
    handle: FileHandle,
    archived: string,
    st: { mode: number; mtime: Date; size: number; nlink: number; dev: number; ino: number },
  ): Promise<void> => {
    count();
    if (st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      const first = linked.get(key);
      if (first !== undefined) {
        writer.add({ path: archived, type: 'Link', mode: st.mode, mtime: st.mtime, linkpath: first });
        return;
      }
      linked.set(key, archived);
    }
    if (bytes + st.size > limits.maxBytes) {
      throw limitError(
        `The workspace holds more than ${limits.maxBytes} bytes of files (${ws.display(archived)} is ${st.size} bytes, sparse?), the checkpoint limit; remove or shrink it and retry.`,
      );
    }
    bytes += st.size;
    // The size is fixed in the header: read exactly that much, zero-filled if the file shrank meanwhile.
    writer.fileHeader({ path: archived, mode: st.mode, mtime: st.mtime }, st.size);
    await flush();
    for (let at = 0; at < st.size; at += CHUNK) {
      const chunk = Buffer.alloc(Math.min(CHUNK, st.size - at));
      let got = 0;
      while (got < chunk.length) {
        const { bytesRead } = await handle.read(chunk, got, chunk.length - got, at + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      writer.body(chunk);
      await flush();
    }
    writer.pad(st.size);
  };

  const walk = async (dir: FileHandle, prefix: string, depth: number): Promise<void> => {
    if (depth > MAX_WALK_DEPTH) {
      throw limitError(`${ws.display(prefix)} is more than ${MAX_WALK_DEPTH} directories deep, the checkpoint limit; flatten it and retry.`);
    }
    const listing = await fsp.opendir(`/proc/self/fd/${dir.fd}`);
    try {
      for await (const dirent of listing) {
        const name = dirent.name;
        const archived = prefix === '' ? name : `${prefix}/${name}`;
        let child: FileHandle;
        try {
          child = await fsp.open(atDir(dir, name), CHILD_FLAGS);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ELOOP') {
            count();
            const target = await fsp.readlink(atDir(dir, name)).catch(() => undefined);
            // Gone again (or no longer a link) since the open: nothing to keep.
            if (target !== undefined) writer.add({ path: archived, type: 'SymbolicLink', mode: 0o777, mtime: new Date(), linkpath: target });
          } else if (code !== 'ENOENT' && code !== 'ENXIO') {
            throw ioError(err, ws.display(archived));
          }
          continue;
        }
        try {
          const st = await child.stat();
          if (st.isDirectory()) {
            count();
            writer.add({ path: archived, type: 'Directory', mode: st.mode, mtime: st.mtime });
            await walk(child, archived, depth + 1);
          } else if (st.isFile()) {
            await addFile(child, archived, st);
          }
        } finally {
          await child.close();
        }
        await flush();
      }
    } finally {
      await listing.close().catch(() => undefined);
    }
  };

  let done = false;
  try {
    const root = await ws.openRoot();
    try {
      await walk(root, '', 1);
    } finally {
      await root.close();
    }
    writer.finish();
    await flush();
    await out.sync();
    done = true;
  } finally {
    await out.close();
    if (done) await fsp.rename(partial, file);
    else await fsp.rm(partial, { force: true });
  }
  return { entries, bytes };
}

/**
 * Empties the workspace and unpacks checkpoint `file` into it. The file is
 * opened first: a checkpoint that does not exist leaves the workspace as it was.
 */
export async function restoreWorkspace(ws: WorkspaceFs, file: string, limits: CheckpointLimits, signal?: AbortSignal): Promise<void> {
  const maxEntries = limits.maxEntries ?? CHECKPOINT_MAX_ENTRIES;
  const input = await fsp.open(file, C.O_RDONLY | C.O_NOFOLLOW).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new RunnerError('invalid_input', `checkpoint ${path.basename(file, '.tar')} does not exist for this session; take a checkpoint first`);
    }
    throw err;
  });
  try {
    await clearWorkspace(ws, signal);
    const reader = new TarFileReader(input);
    let entries = 0;
    let bytes = 0;
    for (let e = await reader.next(); e !== undefined; e = await reader.next()) {
      signal?.throwIfAborted();
      if (++entries > maxEntries) throw limitError(`The checkpoint holds more than ${maxEntries} entries, the restore limit.`);
      const rel = entryPath(e.path);
      const mode = e.mode & 0o777;
      if (e.type === 'Directory') {
        if (rel === '') continue;
        const { dir } = await ws.openDir(rel, { create: true });
        await dir.chmod(mode).finally(() => dir.close());
        continue;
      }
      if (rel === '') throw new RunnerError('invalid_input', 'The checkpoint has an entry without a name; take a new checkpoint.');
      const parent = await ws.parent(rel, { create: true });
      const shown = ws.display(parent.rel);
      try {
        if (e.type === 'SymbolicLink') {
          await ws.createSymlink(parent.dir, parent.name, e.linkpath ?? '', shown);
        } else if (e.type === 'Link') {
          await linkTo(ws, entryPath(e.linkpath ?? ''), parent.dir, parent.name, shown);
        } else if (e.type === 'File' || e.type === 'OldFile' || e.type === 'ContiguousFile') {
          bytes += e.size;
          if (bytes > limits.maxBytes) throw limitError(`The checkpoint unpacks to more than ${limits.maxBytes} bytes, the workspace limit.`);
          const handle = await ws.openForWrite(parent.dir, parent.name, mode, shown);
          try {
            await reader.body(async (chunk) => {
              for (let off = 0; off < chunk.length; ) off += (await handle.write(chunk, off, chunk.length - off)).bytesWritten;
            });
            if (e.mtime) await handle.utimes(e.mtime, e.mtime);
          } finally {
            await handle.close();
          }
        } else {
          throw new RunnerError('invalid_input', `The checkpoint entry ${e.path} is of type ${e.type}, which a checkpoint never holds; take a new checkpoint.`);
        }
      } finally {
        await parent.dir.close();
      }
    }
  } finally {
    await input.close();
  }
}

/**
 * Gives the file at workspace path `targetRel` the further name `name` in
 * `dir`. Both ends are reached by the confined walk and link(2) follows no
 * symlink in its last components, so the new name is always of a file inside
 * the workspace.
 */
async function linkTo(ws: WorkspaceFs, targetRel: string, dir: FileHandle, name: string, shown: string): Promise<void> {
  if (targetRel === '') throw new RunnerError('invalid_input', `The checkpoint links ${shown} to nothing; take a new checkpoint.`);
  const target = await ws.parent(targetRel);
  try {
    await fsp.link(atDir(target.dir, target.name), atDir(dir, name));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new RunnerError('invalid_input', `${shown} already exists in the workspace; remove it first.`);
    if (code === 'ENOENT' || code === 'EPERM') {
      throw new RunnerError('invalid_input', `${shown} links to ${ws.display(targetRel)}, which is not a file in the workspace (any more); take a new checkpoint.`);
    }
    throw ioError(err, shown);
  } finally {
    await target.dir.close();
  }
}

/**
 * Removes everything in the workspace, fd-relative: a directory swapped for a
 * symlink is unlinked as a link, never descended. A directory deeper than
 * {@link MAX_WALK_DEPTH} is moved up to the root (same filesystem, a rename) and
 * emptied in a later pass, so no depth holds more fds than that. What the
 * session's own processes write meanwhile may survive; the restore goes on
 * (that is theirs to race, as with any write of theirs during a restore).
 */
async function clearWorkspace(ws: WorkspaceFs, signal?: AbortSignal): Promise<void> {
  const root = await ws.openRoot();
  try {
    for (let pass = 0; pass < MAX_CLEAR_PASSES; pass++) {
      signal?.throwIfAborted();
      if (await clearDir(ws, root, root, 1, signal)) return;
    }
  } finally {
    await root.close();
  }
}

/** One pass over `dir`; true when it was found empty. */
async function clearDir(ws: WorkspaceFs, root: FileHandle, dir: FileHandle, depth: number, signal?: AbortSignal): Promise<boolean> {
  let empty = true;
  const listing = await fsp.opendir(`/proc/self/fd/${dir.fd}`);
  try {
    for await (const dirent of listing) {
      signal?.throwIfAborted();
      empty = false;
      const name = dirent.name;
      try {
        await fsp.unlink(atDir(dir, name));
        continue;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') continue;
        if (code !== 'EISDIR' && code !== 'EPERM') throw ioError(err, name);
      }
      if (depth >= MAX_WALK_DEPTH) {
        await fsp.rename(atDir(dir, name), atDir(root, `.restore-deep-${process.hrtime.bigint()}`)).catch(ignoreGone);
        continue;
      }
      const child = await ws.openChildDir(dir, name);
      if (child) {
        try {
          await clearDir(ws, root, child, depth + 1, signal);
        } finally {
          await child.close();
        }
      }
      // Not empty again (sandboxed code writing) or no longer a directory: the next pass sees it.
      await fsp.rmdir(atDir(dir, name)).catch(ignoreGone);
    }
  } finally {
    await listing.close().catch(() => undefined);
  }
  return empty;
}

function ignoreGone(err: unknown): void {
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'ENOTDIR' && code !== 'EEXIST') throw err;
}

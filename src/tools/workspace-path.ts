import { constants as C, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { describeError, isRunnerError, RunnerError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { textOutcome, type ToolOutcome } from './tool.js';

/**
 * Path confinement for the tools that touch a session's workspace from the host
 * (editor, files). The workspace is a host directory that sandboxed code can
 * write to at the same time, so any component may be swapped for a symlink
 * between a check and a use. Everything here therefore walks the path one
 * component at a time, each step an open() with O_NOFOLLOW relative to the
 * directory fd opened just before (through /proc/self/fd/N/name, Linux's openat
 * for a runtime without openat). The kernel never follows a symlink for us; a
 * symlink we meet is read and resolved by hand, and only if its target stays
 * inside the workspace.
 */

/** Where the workspace appears inside the sandbox; tool paths may start with it. */
export const SANDBOX_WORKSPACE = '/workspace';

const MAX_SYMLINK_HOPS = 40;
/**
 * Directories opened while resolving one path, all hops together. A symlink
 * sends the walk back to the root, so without a bound sandboxed code could
 * plant chains of links into deep trees that cost the runner hundreds of
 * thousands of opens for one path (130 s for one `view`, measured), with no
 * way to cancel them.
 */
const MAX_RESOLVE_STEPS = 4096;
/** Longest tool path accepted: Linux's PATH_MAX, what a process in the sandbox can name at all. */
const MAX_PATH_BYTES = 4096;

/** What one path's resolution may still spend (shared by all its hops, as the kernel counts links). */
interface ResolveBudget {
  hops: number;
  steps: number;
}

/**
 * Directory levels a walk of the whole tree (download, checkpoint) descends at
 * most: each level below holds an fd open, and the runner's fds are shared by
 * every session, while a tree thousands of levels deep is cheap for sandboxed
 * code to make.
 */
export const MAX_WALK_DEPTH = 256;
const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
// O_NONBLOCK: opening a FIFO planted by sandboxed code must not hang the runner.
const READ_FLAGS = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK;

/** The path of `name` inside an open directory, resolved by the kernel without races. */
export function atDir(dir: FileHandle, name: string): string {
  return `/proc/self/fd/${dir.fd}/${name}`;
}

/** What an existing path turned out to be, opened (caller closes `handle`). */
export interface OpenedEntry {
  /** Canonical workspace-relative path after resolving symlinks inside the workspace ('' = root). */
  rel: string;
  kind: 'file' | 'directory' | 'other';
  handle: FileHandle;
  size: number;
  mode: number;
}

/** The directory that holds `name`, opened (caller closes `dir`). */
export interface ParentEntry {
  /** Canonical workspace-relative path of the entry itself. */
  rel: string;
  /** Canonical workspace-relative path of `dir`. */
  dirRel: string;
  dir: FileHandle;
  name: string;
}

function invalid(message: string): RunnerError {
  return new RunnerError('invalid_input', message);
}

function tooManyLinks(shown: string): RunnerError {
  return invalid(`The path ${shown} goes through more than ${MAX_SYMLINK_HOPS} symbolic links; give the real path.`);
}

function changing(shown: string): RunnerError {
  return invalid(`The path ${shown} changed while it was being resolved (a process in the sandbox is changing it); retry when it is stable.`);
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * A session workspace seen from the host. Create with {@link WorkspaceFs.open}.
 * All methods throw RunnerError `invalid_input` with a sentence for the model
 * (a path outside, missing, a symlink pointing out) and `io` for the rest.
 */
export class WorkspaceFs {
  private constructor(
    /** Real host path of the workspace root. */
    readonly root: string,
    private readonly owner: { uid: number; gid: number },
    private readonly dirMode: number | undefined,
  ) {}

  /**
   * Opens the workspace at host directory `hostDir` (symlinks in `hostDir`
   * itself are the operator's). `dirMode`: the mode of every directory made,
   * set outright (the umask does not cut it).
   */
  static async open(hostDir: string, options: { dirMode?: number } = {}): Promise<WorkspaceFs> {
    const root = await fsp.realpath(hostDir);
    const st = await fsp.stat(root);
    if (!st.isDirectory()) throw new RunnerError('internal', `workspace ${root} is not a directory; recreate the session`);
    return new WorkspaceFs(root, { uid: st.uid, gid: st.gid }, options.dirMode);
  }

  /**
   * Turns a tool path into a workspace-relative one: `/workspace/x`, `x` and
   * `./x` are the same file; `..` may not climb above the root; any other
   * absolute path is refused.
   */
  relative(input: string): string {
    if (input.includes('\0')) throw invalid('The path contains a NUL byte; give a plain path inside /workspace.');
    if (Buffer.byteLength(input) > MAX_PATH_BYTES) throw invalid(`The path is longer than ${MAX_PATH_BYTES} bytes; give a shorter path inside ${SANDBOX_WORKSPACE}.`);
    let p = input;
    if (p.startsWith('/')) {
      const norm = path.posix.normalize(p);
      if (norm !== SANDBOX_WORKSPACE && !norm.startsWith(`${SANDBOX_WORKSPACE}/`)) {
        throw invalid(`The path ${input} is outside the workspace; give a path under ${SANDBOX_WORKSPACE} or relative to it.`);
      }
      p = norm.slice(SANDBOX_WORKSPACE.length).replace(/^\/+/, '');
    }
    const norm = path.posix.normalize(p === '' ? '.' : p).replace(/\/+$/, '');
    if (norm === '..' || norm.startsWith('../')) {
      throw invalid(`The path ${input} leaves the workspace through ..; give a path under ${SANDBOX_WORKSPACE}.`);
    }
    return norm === '.' ? '' : norm;
  }

  /** The path as the model sees it inside the sandbox. */
  display(rel: string): string {
    return rel === '' ? SANDBOX_WORKSPACE : `${SANDBOX_WORKSPACE}/${rel}`;
  }

  /**
   * Opens subdirectory `name` of `dir` without following a symlink; undefined
   * when it is not a directory any more (sandboxed code may have changed it).
   */
  async openChildDir(dir: FileHandle, name: string): Promise<FileHandle | undefined> {
    try {
      return await fsp.open(atDir(dir, name), DIR_FLAGS);
    } catch (err) {
      const code = errno(err);
      if (code === 'ELOOP' || code === 'ENOTDIR' || code === 'ENOENT') return undefined;
      throw ioError(err, name);
    }
  }

  /** Opens the root directory itself. */
  openRoot(): Promise<FileHandle> {
    return fsp.open(this.root, DIR_FLAGS);
  }

  /**
   * Opens the directory that holds the last component of `rel`, creating
   * missing directories when `create` is set. Symlinked components are
   * followed by hand when they point inside the workspace.
   */
  async parent(rel: string, options: { create?: boolean } = {}, budget: ResolveBudget = { hops: 0, steps: 0 }): Promise<ParentEntry> {
    let current = rel;
    for (;;) {
      const parts = current === '' ? [] : current.split('/');
      const name = parts.pop() ?? '';
      let dir = await this.openRoot();
      let restart: string | undefined;
      try {
        for (let i = 0; i < parts.length; i++) {
          const part = parts[i] as string;
          if (++budget.steps > MAX_RESOLVE_STEPS) {
            throw invalid(`The path ${this.display(rel)} takes more than ${MAX_RESOLVE_STEPS} directory steps to resolve (deep trees, links); give the real, shorter path.`);
          }
          const next = await this.stepDir(dir, part, parts.slice(0, i + 1).join('/'), options.create === true);
          if (typeof next === 'string') {
            restart = joinRel(next, [...parts.slice(i + 1), name].join('/'));
            break;
          }
          await dir.close();
          dir = next;
        }
      } catch (err) {
        await dir.close();
        throw err;
      }
      if (restart === undefined) return { rel: current, dirRel: parts.join('/'), dir, name };
      await dir.close();
      current = restart;
      if (++budget.hops > MAX_SYMLINK_HOPS) throw tooManyLinks(this.display(rel));
    }
  }

  /**
   * Opens an existing file or directory without following a symlink out of the
   * workspace. Throws `invalid_input` saying the path does not exist.
   */
  async openExisting(rel: string, options: { write?: boolean } = {}): Promise<OpenedEntry> {
    const flags = options.write === true ? C.O_RDWR | C.O_NOFOLLOW | C.O_NONBLOCK : READ_FLAGS;
    let current = rel;
    const budget: ResolveBudget = { hops: 0, steps: 0 };
    for (;;) {
      if (current === '') {
        if (options.write === true) {
          throw invalid(`The path ${this.display(rel)} is a directory and only the \`view\` command can be used on directories.`);
        }
        return this.describe('', await this.openRoot());
      }
      const { rel: entryRel, dirRel, dir, name } = await this.parent(current, {}, budget);
      try {
        let handle: FileHandle;
        try {
          handle = await fsp.open(atDir(dir, name), flags);
        } catch (err) {
          const code = errno(err);
          if (code === 'ENOENT') throw invalid(`The path ${this.display(rel)} does not exist. Please provide a valid path.`);
          if (code === 'ELOOP') {
            current = await this.followLink(dir, name, dirRel);
            if (++budget.hops > MAX_SYMLINK_HOPS) throw tooManyLinks(this.display(rel));
            continue;
          }
          if (code === 'EISDIR') {
            throw invalid(`The path ${this.display(rel)} is a directory and only the \`view\` command can be used on directories.`);
          }
          if (code === 'ENXIO') throw invalid(`The path ${this.display(rel)} is a socket or device, not a file; give a regular file.`);
          throw ioError(err, this.display(rel));
        }
        return await this.describe(entryRel, handle);
      } finally {
        await dir.close();
      }
    }
  }

  /**
   * Creates a new regular file (never through a symlink, never over an existing
   * entry: EEXIST becomes `exists`), owned like the workspace root.
   */
  async createFile(dir: FileHandle, name: string, data: Uint8Array, mode = 0o644): Promise<'created' | 'exists'> {
    let handle: FileHandle;
    try {
      handle = await fsp.open(atDir(dir, name), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, mode);
    } catch (err) {
      if (errno(err) === 'EEXIST') return 'exists';
      throw ioError(err, name);
    }
    try {
      await this.chownNew(handle);
      await handle.writeFile(data);
    } finally {
      await handle.close();
    }
    return 'created';
  }

  /**
   * Writes regular file `name` in `dir`, replacing an existing regular file's
   * content; refuses to write through a symlink or into anything else.
   */
  async writeFile(dir: FileHandle, name: string, data: Uint8Array, mode: number, shown: string): Promise<void> {
    if ((await this.createFile(dir, name, data, mode)) === 'created') return;
    const handle = await this.openExistingEmptied(dir, name, shown);
    try {
      await handle.write(data, 0, data.length, 0);
      await handle.chmod(mode);
    } finally {
      await handle.close();
    }
  }

  /**
   * Opens regular file `name` in `dir` for writing from its start: a new file
   * (owned like the root, mode `mode`) or an existing regular file emptied;
   * never through a symlink, never into anything else. Caller closes it.
   */
  async openForWrite(dir: FileHandle, name: string, mode: number, shown: string): Promise<FileHandle> {
    try {
      const handle = await fsp.open(atDir(dir, name), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, mode);
      await this.chownNew(handle).catch(async (err: unknown) => {
        await handle.close();
        throw ioError(err, shown);
      });
      return handle;
    } catch (err) {
      if (errno(err) !== 'EEXIST') throw isRunnerError(err) ? err : ioError(err, shown);
    }
    const handle = await this.openExistingEmptied(dir, name, shown);
    try {
      await handle.chmod(mode);
      return handle;
    } catch (err) {
      await handle.close();
      throw ioError(err, shown);
    }
  }

  /**
   * Opens the existing regular file `name` in `dir` for writing and empties
   * it; never through a symlink, never a directory, FIFO or socket. Caller closes it.
   */
  private async openExistingEmptied(dir: FileHandle, name: string, shown: string): Promise<FileHandle> {
    let handle: FileHandle;
    try {
      handle = await fsp.open(atDir(dir, name), C.O_WRONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    } catch (err) {
      const code = errno(err);
      if (code === 'ELOOP') throw invalid(`${shown} is a symbolic link in the workspace; remove it first, files are never written through links.`);
      if (code === 'EISDIR') throw invalid(`${shown} is a directory in the workspace; remove it first or choose another path.`);
      if (code === 'ENXIO') throw invalid(`${shown} is a FIFO or socket in the workspace; remove it first.`);
      throw ioError(err, shown);
    }
    try {
      if (!(await handle.stat()).isFile()) throw invalid(`${shown} is not a regular file in the workspace; remove it first.`);
      await handle.truncate(0);
      return handle;
    } catch (err) {
      await handle.close();
      throw isRunnerError(err) ? err : ioError(err, shown);
    }
  }

  /** Creates symlink `name` -> `target` in `dir`, owned like the root; the runner never follows it. */
  async createSymlink(dir: FileHandle, name: string, target: string, shown: string): Promise<void> {
    try {
      await fsp.symlink(target, atDir(dir, name));
      // lchown: the last component is not followed, whatever sandboxed code put there since.
      if (process.getuid?.() === 0) await fsp.lchown(atDir(dir, name), this.owner.uid, this.owner.gid);
    } catch (err) {
      if (errno(err) === 'EEXIST') throw invalid(`${shown} already exists in the workspace; remove it first.`);
      throw ioError(err, shown);
    }
  }

  /** Opens directory `rel`, creating it and its parents when `create` is set. */
  async openDir(rel: string, options: { create?: boolean } = {}): Promise<{ rel: string; dir: FileHandle }> {
    if (rel === '') return { rel, dir: await this.openRoot() };
    const parent = await this.parent(rel, options);
    try {
      if (options.create === true) {
        const dir = await this.makeDir(parent.dir, parent.name);
        return { rel: parent.rel, dir };
      }
    } finally {
      await parent.dir.close();
    }
    const entry = await this.openExisting(rel);
    if (entry.kind !== 'directory') {
      await entry.handle.close();
      throw invalid(`The path ${this.display(rel)} is not a directory; give a directory.`);
    }
    return { rel: entry.rel, dir: entry.handle };
  }

  /** Creates directory `name` in `dir` if missing and opens it (never through a symlink). */
  async makeDir(dir: FileHandle, name: string, mode = 0o755): Promise<FileHandle> {
    let made = false;
    try {
      await fsp.mkdir(atDir(dir, name), mode);
      made = true;
    } catch (err) {
      if (errno(err) !== 'EEXIST') throw ioError(err, name);
    }
    const handle = await fsp.open(atDir(dir, name), DIR_FLAGS).catch((err: unknown) => {
      if (errno(err) === 'ELOOP' || errno(err) === 'ENOTDIR') {
        throw invalid(`Cannot make directory ${name}: a file or symbolic link of that name is in the way; remove it first.`);
      }
      throw ioError(err, name);
    });
    if (made) {
      await this.chownNew(handle);
      if (this.dirMode !== undefined) await handle.chmod(this.dirMode);
    }
    return handle;
  }

  /** Gives a new entry the owner of the workspace root, so the sandbox user can change it. */
  async chownNew(handle: FileHandle): Promise<void> {
    if (process.getuid?.() !== 0) return;
    await handle.chown(this.owner.uid, this.owner.gid);
  }

  private async describe(rel: string, handle: FileHandle): Promise<OpenedEntry> {
    const st = await handle.stat().catch(async (err: unknown) => {
      await handle.close();
      throw ioError(err, this.display(rel));
    });
    const kind = st.isFile() ? 'file' : st.isDirectory() ? 'directory' : 'other';
    return { rel, kind, handle, size: st.size, mode: st.mode };
  }

  /** One step down: the opened child directory, or the new logical path when `part` is a symlink. */
  private async stepDir(dir: FileHandle, part: string, relSoFar: string, create: boolean): Promise<FileHandle | string> {
    try {
      return await fsp.open(atDir(dir, part), DIR_FLAGS);
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT') {
        if (create) return this.makeDir(dir, part);
        throw invalid(`The directory ${this.display(relSoFar)} does not exist. Please provide a valid path.`);
      }
      if (code === 'ELOOP' || code === 'ENOTDIR') {
        const st = await fsp.lstat(atDir(dir, part)).catch((e: unknown) => {
          throw errno(e) === 'ENOENT' ? changing(this.display(relSoFar)) : ioError(e, this.display(relSoFar));
        });
        if (st.isSymbolicLink()) return this.followLink(dir, part, parentOf(relSoFar));
        throw invalid(`The path ${this.display(relSoFar)} is a file, not a directory; give a path through directories.`);
      }
      throw ioError(err, this.display(relSoFar));
    }
  }

  /** Reads symlink `name` in `dir` (at `dirRel`) and returns its target as a workspace path, or refuses. */
  private async followLink(dir: FileHandle, name: string, dirRel: string): Promise<string> {
    const linkRel = joinRel(dirRel, name);
    const target = await fsp.readlink(atDir(dir, name)).catch((err: unknown) => {
      // No longer a link (EINVAL) or gone: sandboxed code changed it since the open that met the link.
      if (errno(err) === 'EINVAL' || errno(err) === 'ENOENT') throw changing(this.display(linkRel));
      throw ioError(err, this.display(linkRel));
    });
    const outside = (): RunnerError =>
      invalid(
        `The path ${this.display(linkRel)} is a symbolic link to ${target}, outside the workspace; tools do not follow it. Give a path inside ${SANDBOX_WORKSPACE}.`,
      );
    let candidate: string;
    if (target.startsWith('/')) {
      const norm = path.posix.normalize(target);
      if (norm !== SANDBOX_WORKSPACE && !norm.startsWith(`${SANDBOX_WORKSPACE}/`)) throw outside();
      candidate = norm.slice(SANDBOX_WORKSPACE.length).replace(/^\/+/, '');
    } else {
      candidate = path.posix.normalize(joinRel(dirRel, target));
    }
    candidate = candidate.replace(/\/+$/, '');
    if (candidate === '..' || candidate.startsWith('../')) throw outside();
    return candidate === '.' ? '' : candidate;
  }
}

function joinRel(a: string, b: string): string {
  if (a === '') return b;
  if (b === '') return a;
  return `${a}/${b}`;
}

function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

/**
 * Reads an opened file from its start, but never more than `limit` bytes
 * (`more` says there was more). A size checked with stat is no bound on what
 * a read returns: sandboxed code can grow a file between the two, for free
 * with a sparse one, and readFile() allocates whatever fstat says then.
 */
export async function readAtMost(handle: FileHandle, limit: number): Promise<{ data: Buffer; more: boolean }> {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const want = Math.min(64 * 1024, limit + 1 - total);
    const buf = Buffer.allocUnsafe(want);
    const { bytesRead } = await handle.read(buf, 0, want, total);
    if (bytesRead === 0) break;
    chunks.push(buf.subarray(0, bytesRead));
    total += bytesRead;
    if (total > limit) return { data: Buffer.alloc(0), more: true };
  }
  return { data: Buffer.concat(chunks, total), more: false };
}

/** An unexpected filesystem error, as a RunnerError saying which path. */
export function ioError(err: unknown, shownPath: string): RunnerError {
  const code = errno(err);
  if (code === 'EACCES' || code === 'EPERM') {
    return new RunnerError('invalid_input', `Permission denied on ${shownPath}; check its mode with ls -l.`, { cause: err });
  }
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new RunnerError('limit_exceeded', `The workspace is full while writing ${shownPath}; free some space and retry.`, { cause: err });
  }
  return new RunnerError('io', `Could not access ${shownPath} (${code ?? 'unknown error'}); retry, or check the path with ls.`, {
    cause: err,
  });
}

/**
 * The tool result for an error thrown while serving a call: the model reads
 * the sentence of an `invalid_input` or `limit_exceeded` error as is; anything
 * else is logged and reported without internals.
 */
export function failureOutcome(err: unknown, logger: Logger, tool: string): ToolOutcome {
  if (isRunnerError(err, 'invalid_input', 'limit_exceeded', 'io')) return textOutcome(err.message, 'failed', true);
  if (isRunnerError(err, 'cancelled')) return textOutcome(err.message, 'cancelled', true);
  if (isRunnerError(err, 'timed_out')) return textOutcome(err.message, 'timed_out', true);
  logger.error({ err, tool }, 'tool failed unexpectedly');
  return textOutcome(`The ${tool} tool failed unexpectedly (${describeError(err)}); retry the call, or report it if it happens again.`, 'failed', true);
}

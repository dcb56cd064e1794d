import { Parser, type ReadEntry } from 'tar';
import { RunnerError } from '../../util/errors.js';
import type { WorkspaceFs } from '../workspace-path.js';

/** Limits of one upload. */
export interface UploadLimits {
  /** Bytes of file content the archive may unpack to. */
  maxBytes: number;
  /** Entries the archive may hold. */
  maxEntries: number;
}

export interface UploadSummary {
  files: number;
  directories: number;
  bytes: number;
}

interface Planned {
  path: string;
  kind: 'file' | 'directory';
  mode: number;
  body: Buffer;
}

function refuse(message: string): RunnerError {
  return new RunnerError('invalid_input', message);
}

/**
 * Checks an entry's path: relative, no `..`, no NUL; returns it normalised
 * ('' for the archive's root directory entry).
 */
export function entryPath(raw: string): string {
  if (raw.includes('\0')) throw refuse(`The archive entry ${JSON.stringify(raw)} has a NUL byte in its name; rebuild the archive.`);
  if (raw.startsWith('/') || /^[A-Za-z]:/.test(raw)) {
    throw refuse(`The archive entry ${raw} has an absolute path; rebuild the archive with relative paths (tar -C DIR -cf - .).`);
  }
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw refuse(`The archive entry ${raw} contains "..", which could leave the workspace; rebuild the archive without it.`);
  return parts.join('/');
}

/**
 * Reads the whole archive and checks every entry before anything is written:
 * only regular files and directories, relative paths, within the limits. A
 * refusal names the entry and the rule, so nothing of a hostile archive lands.
 */
export async function planUpload(archive: Buffer, limits: UploadLimits): Promise<Planned[]> {
  const planned: Planned[] = [];
  let bytes = 0;
  let failure: unknown;
  const parser = new Parser({ strict: true, maxDecompressionRatio: 100 });
  let finish = (): void => undefined;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
    parser.on('close', () => resolve());
    parser.on('end', () => resolve());
  });
  // abort() emits neither 'end' nor 'close': the first failure settles the read itself.
  const fail = (err: unknown): void => {
    if (failure !== undefined) return;
    failure = err;
    finish();
    parser.abort(err instanceof Error ? err : new Error(String(err)));
  };
  parser.on('error', (err: Error) => fail(refuse(`The archive is not a valid tar (${err.message}); send a tar or tar.gz, base64-encoded.`)));
  parser.on('entry', (entry: ReadEntry) => {
    try {
      if (failure !== undefined) return void entry.resume();
      if (planned.length >= limits.maxEntries) {
        throw new RunnerError('limit_exceeded', `The archive has more than ${limits.maxEntries} entries, the upload limit; split it into several uploads.`);
      }
      const path = entryPath(entry.path);
      const kind = classify(entry);
      const size = entry.size ?? 0;
      bytes += size;
      if (bytes > limits.maxBytes) {
        throw new RunnerError('limit_exceeded', `The archive unpacks to more than ${limits.maxBytes} bytes, the upload limit; split it into several uploads.`);
      }
      const item: Planned = { path, kind, mode: (entry.mode ?? (kind === 'file' ? 0o644 : 0o755)) & 0o777, body: Buffer.alloc(0) };
      planned.push(item);
      if (kind === 'directory') return void entry.resume();
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => {
        item.body = Buffer.concat(chunks);
      });
    } catch (err) {
      entry.resume();
      fail(err);
    }
  });
  parser.end(archive);
  await done;
  if (failure !== undefined) throw failure;
  return planned;
}

function classify(entry: ReadEntry): 'file' | 'directory' {
  switch (entry.type) {
    case 'File':
    case 'OldFile':
    case 'ContiguousFile':
      return 'file';
    case 'Directory':
      return 'directory';
    case 'SymbolicLink':
      throw refuse(`The archive entry ${entry.path} is a symbolic link (to ${entry.linkpath ?? '?'}); links are refused, send the file itself.`);
    case 'Link':
      throw refuse(`The archive entry ${entry.path} is a hard link (to ${entry.linkpath ?? '?'}); links are refused, send the file itself.`);
    case 'CharacterDevice':
    case 'BlockDevice':
      throw refuse(`The archive entry ${entry.path} is a device node; only regular files and directories are accepted.`);
    case 'FIFO':
      throw refuse(`The archive entry ${entry.path} is a FIFO; only regular files and directories are accepted.`);
    default:
      throw refuse(`The archive entry ${entry.path} is of type ${entry.type}; only regular files and directories are accepted.`);
  }
}

/** Writes planned entries under `destRel`, every step confined by the workspace walk. */
export async function applyUpload(ws: WorkspaceFs, destRel: string, planned: Planned[], signal: AbortSignal): Promise<UploadSummary> {
  const summary: UploadSummary = { files: 0, directories: 0, bytes: 0 };
  const dest = await ws.openDir(destRel, { create: true });
  await dest.dir.close();
  for (const item of planned) {
    signal.throwIfAborted();
    const rel = [dest.rel, item.path].filter((p) => p !== '').join('/');
    if (item.kind === 'directory') {
      // The archive's own root (`./`) is the destination itself.
      if (item.path === '') continue;
      const { dir } = await ws.openDir(rel, { create: true });
      await dir.close();
      summary.directories++;
      continue;
    }
    if (item.path === '') throw refuse('The archive has a file entry without a name; rebuild the archive.');
    const parent = await ws.parent(rel, { create: true });
    try {
      await ws.writeFile(parent.dir, parent.name, item.body, item.mode, ws.display(parent.rel));
    } finally {
      await parent.dir.close();
    }
    summary.files++;
    summary.bytes += item.body.length;
  }
  return summary;
}

import { createReadStream, readdirSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { auditFileIndex } from './audit-entry.js';

/** One file of the rotation sequence. */
export interface AuditFile {
  index: number;
  name: string;
  path: string;
}

/** The audit files in `dir`, oldest first. Other names in the directory are ignored. */
export function listAuditFiles(dir: string): AuditFile[] {
  const files: AuditFile[] = [];
  for (const name of readdirSync(dir)) {
    const index = auditFileIndex(name);
    if (index !== undefined) files.push({ index, name, path: join(dir, name) });
  }
  return files.sort((a, b) => a.index - b.index);
}

/** What the end of a file looks like. */
export interface FileTail {
  /** Offset just past the last newline: where complete entries end. */
  completeEnd: number;
  /** The last complete line, without its newline; undefined when the file has none. */
  lastLine: string | undefined;
}

const CHUNK = 64 * 1024;

/**
 * Finds the last complete line of an open file of `size` bytes by reading
 * backwards in chunks, so that start-up costs the same for a 1 KiB file and a
 * 1 GiB one. Bytes after the last newline are a torn write.
 */
export function readTail(fd: number, size: number): FileTail {
  let pos = size;
  let buf = Buffer.alloc(0);
  let lastNl = -1;
  while (pos > 0) {
    const n = Math.min(CHUNK, pos);
    pos -= n;
    const chunk = Buffer.alloc(n);
    readSync(fd, chunk, 0, n, pos);
    buf = Buffer.concat([chunk, buf]);
    if (lastNl < 0) {
      const i = buf.lastIndexOf(0x0a);
      if (i >= 0) lastNl = pos + i;
    }
    // Buffer.lastIndexOf counts a negative offset from the end: only search
    // when the newline before the last one could lie in what was read.
    if (lastNl >= 0 && lastNl - pos - 1 >= 0) {
      const j = buf.lastIndexOf(0x0a, lastNl - pos - 1);
      if (j >= 0) return { completeEnd: lastNl + 1, lastLine: buf.subarray(j + 1, lastNl - pos).toString('utf8') };
    }
  }
  if (lastNl < 0) return { completeEnd: 0, lastLine: undefined };
  return { completeEnd: lastNl + 1, lastLine: buf.subarray(0, lastNl).toString('utf8') };
}

/** One line of a file as read by readLines. */
export interface FileLine {
  /** 1-based line number within the file. */
  lineNo: number;
  text: string;
  /** False for a last line without its newline: a torn write or a truncated file. */
  complete: boolean;
  /** Offset just past this line. */
  end: number;
}

/** Streams the lines of a file with their numbers, keeping a torn last line visible. */
export async function* readLines(path: string, options: { start?: number; signal?: AbortSignal } = {}): AsyncGenerator<FileLine> {
  const start = options.start ?? 0;
  const stream = createReadStream(path, { start, signal: options.signal });
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let lineNo = 0;
  let offset = start;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    let from = 0;
    for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, from)) {
      pending.push(chunk.subarray(from, nl));
      const raw = Buffer.concat(pending);
      offset += pendingBytes + (nl - from) + 1;
      pending = [];
      pendingBytes = 0;
      lineNo += 1;
      from = nl + 1;
      yield { lineNo, text: raw.toString('utf8'), complete: true, end: offset };
    }
    if (from < chunk.length) {
      pending.push(chunk.subarray(from));
      pendingBytes += chunk.length - from;
    }
  }
  if (pendingBytes > 0) {
    yield { lineNo: lineNo + 1, text: Buffer.concat(pending).toString('utf8'), complete: false, end: offset + pendingBytes };
  }
}

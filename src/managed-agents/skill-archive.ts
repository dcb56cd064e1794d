import { inflateRawSync, gunzipSync } from 'node:zlib';
import { mkdir, writeFile, chmod } from 'node:fs/promises';
import path from 'node:path';
import { Parser, type ReadEntry } from 'tar';
import { RunnerError } from '../util/errors.js';

/** One member of a skill archive, read fully into memory (skills are small). */
export interface ArchiveMember {
  path: string;
  kind: 'file' | 'dir' | 'link' | 'other';
  mode: number;
  data: Buffer;
}

/** Largest skill archive accepted, unpacked. */
export const MAX_SKILL_BYTES = 64 * 1024 * 1024;

/** Reads a zip (PK\x03\x04) or a tar/tar.gz archive. @throws RunnerError `invalid_input` when it is neither or is corrupt. */
export async function readArchive(buf: Buffer): Promise<ArchiveMember[]> {
  if (buf.subarray(0, 4).equals(Buffer.from([0x50, 0x4b, 0x03, 0x04]))) return readZip(buf);
  const tarBuf = buf[0] === 0x1f && buf[1] === 0x8b ? gunzipSync(buf, { maxOutputLength: MAX_SKILL_BYTES }) : buf;
  return readTar(tarBuf);
}

function readZip(buf: Buffer): ArchiveMember[] {
  // End of central directory: the last 0x06054b50 within the final 64 KiB + 22 bytes.
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65_557); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new RunnerError('invalid_input', 'skill archive is not a valid zip (no central directory)');
  const count = buf.readUInt16LE(eocd + 10);
  let off = buf.readUInt32LE(eocd + 16);
  const out: ArchiveMember[] = [];
  let total = 0;
  for (let n = 0; n < count; n++) {
    if (buf.readUInt32LE(off) !== 0x02014b50) throw new RunnerError('invalid_input', 'skill archive zip central directory is corrupt');
    const madeBy = buf.readUInt16LE(off + 4) >> 8;
    const method = buf.readUInt16LE(off + 10);
    const csize = buf.readUInt32LE(off + 20);
    const usize = buf.readUInt32LE(off + 24);
    const nameLen = buf.readUInt16LE(off + 28);
    const extraLen = buf.readUInt16LE(off + 30);
    const commentLen = buf.readUInt16LE(off + 32);
    const ext = buf.readUInt32LE(off + 38);
    const local = buf.readUInt32LE(off + 42);
    const name = buf.subarray(off + 46, off + 46 + nameLen).toString('utf8');
    off += 46 + nameLen + extraLen + commentLen;
    const unixMode = madeBy === 3 ? ext >>> 16 : 0;
    const type = unixMode & 0o170000;
    const isDir = name.endsWith('/') || type === 0o040000;
    const kind: ArchiveMember['kind'] = isDir ? 'dir' : type === 0o120000 ? 'link' : type === 0 || type === 0o100000 ? 'file' : 'other';
    total += usize;
    if (total > MAX_SKILL_BYTES) throw new RunnerError('invalid_input', 'skill archive unpacks to more than 64 MiB; refused');
    let data = Buffer.alloc(0);
    if (kind === 'file' || kind === 'link') {
      const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
      const raw = buf.subarray(start, start + csize);
      if (method === 0) data = Buffer.from(raw);
      else if (method === 8) data = inflateRawSync(raw, { maxOutputLength: Math.max(usize, 1) });
      else throw new RunnerError('invalid_input', `skill archive member ${name} uses zip method ${method}; only stored and deflate are read`);
    }
    out.push({ path: name, kind, mode: unixMode & 0o7777 || (isDir ? 0o755 : 0o644), data });
  }
  return out;
}

async function readTar(buf: Buffer): Promise<ArchiveMember[]> {
  const out: ArchiveMember[] = [];
  let total = 0;
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        const chunks: Buffer[] = [];
        const kind: ArchiveMember['kind'] =
          entry.type === 'File' || entry.type === 'OldFile' || entry.type === 'ContiguousFile'
            ? 'file'
            : entry.type === 'Directory'
              ? 'dir'
              : entry.type === 'SymbolicLink' || entry.type === 'Link'
                ? 'link'
                : 'other';
        entry.on('data', (c: Buffer) => {
          total += c.length;
          if (total <= MAX_SKILL_BYTES) chunks.push(c);
        });
        entry.on('end', () => out.push({ path: entry.path, kind, mode: (entry.mode ?? 0o644) & 0o7777, data: Buffer.concat(chunks) }));
      },
    });
    parser.on('error', reject);
    parser.on('end', resolve);
    parser.end(buf);
  });
  if (total > MAX_SKILL_BYTES) throw new RunnerError('invalid_input', 'skill archive unpacks to more than 64 MiB; refused');
  return out;
}

/**
 * Checks every member, strips a single wrapper directory, and writes the
 * files under `dest`, keeping exec bits. An absolute or `..` member refuses
 * the whole archive before anything is written; links, devices and FIFOs are
 * left out (a link could point anywhere once inside the sandbox).
 * @returns the number of files written and of members left out.
 */
export async function extractSafely(members: ArchiveMember[], dest: string): Promise<{ files: number; skipped: string[] }> {
  for (const m of members) {
    const p = m.path.replace(/\\/g, '/');
    if (p.startsWith('/') || /^[A-Za-z]:/.test(p) || p.split('/').includes('..') || p.includes('\0')) {
      throw new RunnerError('invalid_input', `skill archive member ${JSON.stringify(m.path)} is absolute or leaves the skill folder; the archive was refused`);
    }
  }
  const norm = members.map((m) => ({ ...m, path: m.path.replace(/\\/g, '/').replace(/^\.\//, '').replace(/\/+$/, '') })).filter((m) => m.path !== '' && m.path !== '.');
  const tops = new Set(norm.map((m) => m.path.split('/')[0]));
  const wrapper = tops.size === 1 && norm.some((m) => m.path.includes('/')) ? [...tops][0]! : undefined;
  const skipped: string[] = [];
  let files = 0;
  await mkdir(dest, { recursive: true, mode: 0o755 });
  for (const m of norm) {
    const rel = wrapper ? m.path.slice(wrapper.length + 1) : m.path;
    if (rel === '') continue;
    const target = path.resolve(dest, rel);
    if (!target.startsWith(path.resolve(dest) + path.sep)) throw new RunnerError('invalid_input', `skill archive member ${JSON.stringify(m.path)} leaves the skill folder; refused`);
    if (m.kind === 'dir') {
      await mkdir(target, { recursive: true, mode: 0o755 });
    } else if (m.kind === 'file') {
      await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
      // flag 'wx': never follow or overwrite something already there.
      await writeFile(target, m.data, { flag: 'wx', mode: 0o644 });
      await chmod(target, m.mode & 0o111 ? 0o755 : 0o644);
      files++;
    } else {
      skipped.push(m.path);
    }
  }
  return { files, skipped };
}

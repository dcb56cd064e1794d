import type { FileHandle } from 'node:fs/promises';
import { Header, Pax, type HeaderData } from 'tar';
import { RunnerError } from '../../util/errors.js';

/** One entry's header as read; its body follows and must be consumed with {@link TarFileReader.body}. */
export interface TarReadEntry {
  path: string;
  type: string;
  size: number;
  mode: number;
  mtime?: Date;
  linkpath?: string;
}

const BLOCK = 512;
/** A PAX extended header larger than this is not one this runner wrote. */
const MAX_PAX_BYTES = 1024 * 1024;
const CHUNK = 1024 * 1024;

function bad(message: string): RunnerError {
  return new RunnerError('invalid_input', `The checkpoint is not a valid archive (${message}); take a new checkpoint.`);
}

/**
 * Reads a tar file one entry at a time with positioned reads, so the caller
 * can apply each entry (await its writes) before the next is read, with one
 * chunk in memory. node-tar's Parser pushes entries as events and would buffer
 * bodies the caller is still writing. Understands what {@link TarWriter}
 * writes (ustar headers, PAX `x` headers for long names) and refuses the rest.
 */
export class TarFileReader {
  private pos = 0;
  private pendingBody = 0;

  constructor(private readonly handle: FileHandle) {}

  /** The next entry, or undefined at the end of the archive. */
  async next(): Promise<TarReadEntry | undefined> {
    if (this.pendingBody > 0) await this.body(async () => undefined);
    let ex: HeaderData | undefined;
    for (;;) {
      const block = await this.read(BLOCK);
      if (block.length < BLOCK) throw bad('it ends inside a header');
      if (block.every((b) => b === 0)) return undefined;
      const header = new Header(block, 0, ex);
      if (!header.cksumValid) throw bad(`a header at byte ${this.pos - BLOCK} has a bad checksum`);
      const size = header.size ?? 0;
      if (header.type === 'ExtendedHeader') {
        if (size > MAX_PAX_BYTES) throw bad('an extended header is too large');
        const body = await this.read(size);
        this.pos += (BLOCK - (size % BLOCK)) % BLOCK;
        ex = Pax.parse(body.toString('utf8'), ex, false);
        continue;
      }
      if (!Number.isSafeInteger(size) || size < 0) throw bad('an entry has an impossible size');
      this.pendingBody = size;
      return {
        path: header.path ?? '',
        type: header.type,
        size,
        mode: header.mode ?? 0,
        ...(header.mtime ? { mtime: header.mtime } : {}),
        ...(header.linkpath ? { linkpath: header.linkpath } : {}),
      };
    }
  }

  /** Hands the current entry's body to `onChunk`, one chunk at a time, then skips its padding. */
  async body(onChunk: (chunk: Buffer) => Promise<void>): Promise<void> {
    const size = this.pendingBody;
    this.pendingBody = 0;
    let left = size;
    while (left > 0) {
      const chunk = await this.read(Math.min(left, CHUNK));
      if (chunk.length === 0) throw bad('it ends inside a file');
      left -= chunk.length;
      await onChunk(chunk);
    }
    this.pos += (BLOCK - (size % BLOCK)) % BLOCK;
  }

  private async read(n: number): Promise<Buffer> {
    const buf = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await this.handle.read(buf, got, n - got, this.pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    this.pos += got;
    return buf.subarray(0, got);
  }
}

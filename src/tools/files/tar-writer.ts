import { Header, Pax } from 'tar';

/** One entry of an archive being built. */
export interface TarEntry {
  path: string;
  type: 'File' | 'Directory' | 'SymbolicLink' | 'Link';
  mode: number;
  mtime: Date;
  /** File content (File only). */
  body?: Buffer;
  /** Target: a SymbolicLink's text, stored as is and never followed; a (hard) Link's archived path. */
  linkpath?: string;
}

const BLOCK = 512;

/**
 * A tar archive built in memory from entries the caller read itself (node-tar's
 * Pack reads paths from disk, and a path-based read is exactly the race the
 * files tool must avoid). Long names get a PAX header, as node-tar would write.
 */
export class TarWriter {
  private readonly chunks: Buffer[] = [];
  private bytes = 0;

  /** Bytes written so far (headers, bodies and padding). */
  get size(): number {
    return this.bytes;
  }

  add(entry: TarEntry): void {
    const size = entry.type === 'File' ? (entry.body?.length ?? 0) : 0;
    this.header(entry, size);
    if (size > 0 && entry.body) {
      this.push(entry.body);
      this.pad(size);
    }
  }

  /**
   * Starts a file of exactly `size` bytes whose body the caller then appends
   * with {@link body} and ends with {@link pad} (a checkpoint streams bodies
   * to disk instead of holding them).
   */
  fileHeader(entry: Omit<TarEntry, 'type' | 'body' | 'linkpath'>, size: number): void {
    this.header({ ...entry, type: 'File' }, size);
  }

  /** Appends body bytes of the file started last. */
  body(chunk: Buffer): void {
    this.push(chunk);
  }

  /** Pads the body of a `size`-byte file to a whole block. */
  pad(size: number): void {
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad > 0) this.push(Buffer.alloc(pad));
  }

  /** Bytes added since the last take, handed over and dropped from memory. */
  take(): Buffer {
    const out = Buffer.concat(this.chunks);
    this.chunks.length = 0;
    return out;
  }

  private header(entry: TarEntry, size: number): void {
    const data = {
      path: entry.type === 'Directory' && !entry.path.endsWith('/') ? `${entry.path}/` : entry.path,
      mode: entry.mode & 0o7777,
      size,
      mtime: entry.mtime,
      type: entry.type,
      uid: 0,
      gid: 0,
      ...(entry.linkpath === undefined ? {} : { linkpath: entry.linkpath }),
    };
    const header = new Header(data);
    const block = Buffer.alloc(BLOCK);
    if (header.encode(block, 0)) {
      // Fields that do not fit the ustar header travel in a PAX extended header first.
      this.push(new Pax({ path: data.path, mtime: data.mtime, size, ...(entry.linkpath === undefined ? {} : { linkpath: entry.linkpath }) }).encode());
    }
    this.push(block);
  }

  /** The finished archive, or the part of it not taken yet (two zero blocks end it). */
  finish(): Buffer {
    this.push(Buffer.alloc(BLOCK * 2));
    return Buffer.concat(this.chunks);
  }

  private push(buf: Buffer): void {
    this.chunks.push(buf);
    this.bytes += buf.length;
  }
}

/**
 * Collects one stream of one bash command up to a sentinel: the bytes before
 * it are the command's output (kept up to a cap, streamed out as they come),
 * the bytes after it belong to the framing and to whatever runs next. A
 * sentinel split across chunks is found too: the tail of each chunk that could
 * begin one is held back, never streamed.
 */
export class OutputCollector {
  private window = Buffer.alloc(0);
  private readonly kept: Buffer[] = [];
  private keptBytes = 0;
  /** Bytes past the cap, counted and dropped. */
  dropped = 0;
  /** Set once the sentinel was seen. */
  found = false;

  constructor(
    private readonly sentinel: Buffer,
    private readonly capBytes: number,
    /** Receives the kept bytes as they are collected; awaited (backpressure). */
    private readonly emit: (chunk: Buffer) => Promise<void>,
  ) {}

  /**
   * Takes a chunk; returns the bytes that came after the sentinel when this
   * chunk completed it, else undefined.
   */
  async push(chunk: Buffer): Promise<Buffer | undefined> {
    if (this.found) return chunk;
    const buf = this.window.length === 0 ? chunk : Buffer.concat([this.window, chunk]);
    const at = buf.indexOf(this.sentinel);
    if (at >= 0) {
      this.found = true;
      this.window = Buffer.alloc(0);
      await this.take(buf.subarray(0, at));
      return buf.subarray(at + this.sentinel.length);
    }
    const hold = partialSuffix(buf, this.sentinel);
    this.window = Buffer.from(buf.subarray(buf.length - hold));
    await this.take(buf.subarray(0, buf.length - hold));
    return undefined;
  }

  /** Flushes what was held back (the stream ended without a sentinel). */
  async flush(): Promise<void> {
    const rest = this.window;
    this.window = Buffer.alloc(0);
    await this.take(rest);
  }

  /** Everything kept, as text. */
  text(): string {
    return Buffer.concat(this.kept).toString('utf8');
  }

  private async take(bytes: Buffer): Promise<void> {
    if (bytes.length === 0) return;
    const room = Math.max(0, this.capBytes - this.keptBytes);
    const keep = bytes.length <= room ? bytes : bytes.subarray(0, room);
    this.dropped += bytes.length - keep.length;
    if (keep.length === 0) return;
    // Kept as is when it is most of the memory behind it (a pipe read, a
    // batch the pump joined): copying every byte once more cost the runner
    // more than the kept output is worth. A small slice of a big buffer is
    // copied, so what is held stays under twice the cap.
    const held = keep.length * 2 >= keep.buffer.byteLength ? keep : Buffer.from(keep);
    this.kept.push(held);
    this.keptBytes += held.length;
    await this.emit(held);
  }
}

/** Length of the longest suffix of `buf` that is a proper prefix of `needle`. */
export function partialSuffix(buf: Buffer, needle: Buffer): number {
  // Byte by byte rather than subarray().equals(): that made two Buffer objects
  // per candidate length, for every chunk of output.
  candidates: for (let k = Math.min(buf.length, needle.length - 1); k > 0; k--) {
    const start = buf.length - k;
    for (let i = 0; i < k; i++) if (buf[start + i] !== needle[i]) continue candidates;
    return k;
  }
  return 0;
}

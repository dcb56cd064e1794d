import type { Readable } from 'node:stream';

export interface OutputPumpOptions {
  /** Most bytes handed to the consumer at once. Default 64 KiB. */
  maxBatchBytes?: number;
  /**
   * Bytes waiting for the consumer above which the stream is paused (the pipe
   * then fills and the writer in the sandbox blocks). Default 1 MiB.
   */
  highWaterBytes?: number;
}

// One pipe read's worth. Larger batches were measured slower end to end: the
// control plane turns each frame into strings (decode, JSON, SSE), and V8
// puts strings over ~128 KiB in its large-object space, a fresh mapping each,
// so per-byte cost there rose by about half from 64 KiB to 128 KiB frames.
const DEFAULT_BATCH = 64 * 1024;
const DEFAULT_HIGH_WATER = 1024 * 1024;

/**
 * Carries one output stream of a sandboxed process to an async consumer (the
 * redactor and the control-plane connection behind it), one batch at a time
 * and in order.
 *
 * Chunks that arrive while the consumer is busy, or in the same turn of the
 * event loop, are handed over together (up to `maxBatchBytes`): a fast writer
 * then costs one consumer call and one WebSocket frame per batch rather than
 * per 64 KiB pipe read, and no promise chain per chunk. Backpressure holds:
 * the stream is paused while more than `highWaterBytes` wait, so memory stays
 * under about highWater + maxBatch + one pipe read per stream whatever the
 * consumer's speed, and a consumer that never finishes stops the writer.
 */
export class OutputPump {
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private running = false;
  private paused = false;
  private idleWaiters: Array<() => void> = [];
  private readonly maxBatch: number;
  private readonly highWater: number;

  constructor(
    private readonly stream: Readable,
    /** Receives each batch; awaited before the next. A rejection is swallowed: the next batch still comes. */
    private readonly consume: (batch: Buffer) => void | Promise<void>,
    options: OutputPumpOptions = {},
  ) {
    this.maxBatch = options.maxBatchBytes ?? DEFAULT_BATCH;
    this.highWater = options.highWaterBytes ?? DEFAULT_HIGH_WATER;
  }

  /** Bytes waiting for the consumer (not counting the batch it holds). */
  get pending(): number {
    return this.queued;
  }

  /** Queues a chunk read from the stream (call it from the stream's 'data' handler). */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.queue.push(chunk);
    this.queued += chunk.length;
    // Asks the stream itself: another pump on the same stream (the shell's
    // previous command) may have resumed it meanwhile.
    if (this.queued >= this.highWater && !this.stream.isPaused()) {
      this.paused = true;
      this.stream.pause();
    }
    if (!this.running) {
      this.running = true;
      // One turn later: the other reads of this poll phase join the first batch.
      setImmediate(() => void this.run());
    }
  }

  /** Resolves once everything queued so far has been consumed. */
  idle(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async run(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.take();
        if (this.paused && this.queued < this.highWater) {
          this.paused = false;
          this.stream.resume();
        }
        try {
          await this.consume(batch);
        } catch {
          // The consumer reports its own failures; the stream must still drain.
        }
      }
    } finally {
      this.running = false;
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  /** The queued chunks from the front, joined, up to maxBatch bytes (a chunk is split when it straddles it). */
  private take(): Buffer {
    const first = this.queue[0]!;
    if (first.length >= this.maxBatch || this.queue.length === 1) {
      const batch = first.length > this.maxBatch ? first.subarray(0, this.maxBatch) : first;
      if (batch === first) this.queue.shift();
      else this.queue[0] = first.subarray(this.maxBatch);
      this.queued -= batch.length;
      return batch;
    }
    const parts: Buffer[] = [];
    let size = 0;
    while (this.queue.length > 0 && size < this.maxBatch) {
      const next = this.queue[0]!;
      const room = this.maxBatch - size;
      if (next.length <= room) {
        parts.push(next);
        this.queue.shift();
        size += next.length;
      } else {
        parts.push(next.subarray(0, room));
        this.queue[0] = next.subarray(room);
        size += room;
      }
    }
    this.queued -= size;
    return Buffer.concat(parts, size);
  }
}

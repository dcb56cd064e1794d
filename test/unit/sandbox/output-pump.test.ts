import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { OutputPump } from '../../../src/sandbox/output-pump.js';

/** A consumer that holds each batch until released, to play a slow control plane. */
function gatedConsumer() {
  const batches: Buffer[] = [];
  let release: (() => void) | undefined;
  let arrived: (() => void) | undefined;
  let gated = true;
  return {
    batches,
    consume: (batch: Buffer) => {
      batches.push(batch);
      arrived?.();
      return gated ? new Promise<void>((r) => (release = r)) : undefined;
    },
    release: () => release?.(),
    /** From now on every batch is taken at once. */
    open: () => {
      gated = false;
      release?.();
    },
    next: () => new Promise<void>((r) => (arrived = r)),
  };
}

describe('OutputPump', () => {
  it('hands chunks over in order, joining those that wait, never above the batch size', async () => {
    const stream = new PassThrough();
    const got: Buffer[] = [];
    const pump = new OutputPump(stream, (b) => void got.push(Buffer.from(b)), { maxBatchBytes: 10, highWaterBytes: 1000 });
    for (const part of ['abc', 'defgh', 'ijklmnopq', 'rstuvwxyz0123']) pump.push(Buffer.from(part));
    await pump.idle();
    expect(Buffer.concat(got).toString()).toBe('abcdefghijklmnopqrstuvwxyz0123');
    expect(got.every((b) => b.length <= 10)).toBe(true);
    // Pushed in one tick, the chunks were joined: 30 bytes in 3 batches, not 4 pushes or more.
    expect(got.map((b) => b.length)).toEqual([10, 10, 10]);
  });

  it('pauses the stream while a slow consumer holds the high-water mark, and resumes it as batches go', async () => {
    const stream = new PassThrough();
    stream.resume();
    const consumer = gatedConsumer();
    const pump = new OutputPump(stream, consumer.consume, { maxBatchBytes: 4, highWaterBytes: 8 });
    const first = consumer.next();
    pump.push(Buffer.from('aaaa'));
    await first;
    // The first batch is with the consumer; four more bytes wait: below the mark.
    pump.push(Buffer.from('bbbb'));
    expect(stream.isPaused()).toBe(false);
    pump.push(Buffer.from('cccc'));
    expect(pump.pending).toBe(8);
    expect(stream.isPaused()).toBe(true);
    const second = consumer.next();
    consumer.release();
    await second;
    expect(pump.pending).toBe(4);
    expect(stream.isPaused()).toBe(false);
    consumer.release();
    await consumer.next();
    consumer.release();
    await pump.idle();
    expect(Buffer.concat(consumer.batches).toString()).toBe('aaaabbbbcccc');
  });

  it('keeps going after a consumer rejects a batch', async () => {
    const stream = new PassThrough();
    const got: string[] = [];
    let calls = 0;
    const pump = new OutputPump(
      stream,
      async (b) => {
        if (calls++ === 0) throw new Error('connection lost');
        got.push(b.toString());
      },
      { maxBatchBytes: 2 },
    );
    pump.push(Buffer.from('xxyyzz'));
    await pump.idle();
    expect(got).toEqual(['yy', 'zz']);
  });

  it('stops a real writer while the consumer is stuck: the pipe fills and the process blocks in write()', async () => {
    // 8 MiB through a pipe; the consumer takes the first batch and never finishes it.
    const child = spawn('/bin/sh', ['-c', 'head -c 8388608 /dev/zero; echo done >&2'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const consumer = gatedConsumer();
    const pump = new OutputPump(child.stdout, consumer.consume, { maxBatchBytes: 64 * 1024, highWaterBytes: 256 * 1024 });
    let read = 0;
    child.stdout.on('data', (c: Buffer) => {
      read += c.length;
      pump.push(c);
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    await consumer.next();
    // Reading stops at the mark, long before the writer could have finished.
    while (!child.stdout.isPaused()) await new Promise((r) => setImmediate(r));
    expect(read).toBeLessThan(1024 * 1024);
    // Bounded: what waits is the mark plus at most one pipe read.
    expect(pump.pending).toBeLessThanOrEqual(256 * 1024 + 64 * 1024);
    expect(stderr).toBe('');
    expect(child.exitCode).toBeNull();
    // Released, everything flows to the end.
    consumer.open();
    await once(child, 'exit');
    await pump.idle();
    expect(consumer.batches.reduce((n, b) => n + b.length, 0)).toBe(8 * 1024 * 1024);
  });
});

import type { Readable } from 'node:stream';
import type { OutputStream, ProcessExit, RunResult, SandboxProcess } from './driver.js';
import { OutputPump } from './output-pump.js';

/**
 * The one place where a live SandboxProcess becomes a RunResult, shared by the
 * process drivers: stdin, per-stream output caps with a visible marker, a hard
 * ceiling on everything read, the wall-time deadline, cancellation, and
 * backpressure towards a slow output consumer.
 */
export interface RunProcessOptions {
  /** Bytes kept of each of stdout and stderr; the rest is dropped and a marker appended. */
  outputBytes: number;
  /**
   * Bytes read in total (both streams, kept or dropped) after which the process
   * is killed and the run ends `output`: a 10 GB flood is never read in full.
   * Default max(16 × outputBytes, 16 MiB).
   */
  outputCeilingBytes?: number;
  /** Wall-time budget from now, in milliseconds. */
  wallTimeMs: number;
  stdin?: string | Uint8Array;
  /**
   * Receives output in batches (chunks read meanwhile are joined, up to 64 KiB),
   * awaited one at a time; the stream is paused while 1 MiB waits (backpressure).
   */
  onOutput?: (stream: OutputStream, chunk: Buffer) => void | Promise<void>;
  signal?: AbortSignal;
  /** Start of the run, for durationMs (default now); lets a driver count its spawn time. */
  startedAt?: number;
}

/** The text appended where a stream was cut. */
export function truncationMarker(droppedBytes: number): string {
  return `\n[output truncated: ${droppedBytes} bytes dropped]\n`;
}

interface Collected {
  kept: Buffer[];
  keptBytes: number;
  dropped: number;
}

/**
 * Drives `proc` to its end and reports what happened. Never throws for what
 * the process did; the process is always dead when this settles.
 */
export async function runProcess(proc: SandboxProcess, options: RunProcessOptions): Promise<RunResult> {
  const startedAt = options.startedAt ?? Date.now();
  const ceiling = options.outputCeilingBytes ?? Math.max(16 * options.outputBytes, 16 * 1024 * 1024);
  let ended: RunResult['ended'] | undefined;
  let totalRead = 0;
  const stop = (why: RunResult['ended']): void => {
    ended ??= why;
    proc.kill();
  };

  const timer = setTimeout(() => stop('wall_time'), Math.max(0, options.wallTimeMs));
  const onAbort = (): void => stop('cancelled');
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });

  writeStdin(proc, options.stdin);

  const collect = (name: OutputStream, stream: Readable): Promise<Collected> => {
    const c: Collected = { kept: [], keptBytes: 0, dropped: 0 };
    return new Promise<Collected>((resolve) => {
      // Backpressure: the pump pauses the stream while the consumer lags; the
      // pipe then fills and the child blocks in write().
      const pump = options.onOutput ? new OutputPump(stream, (chunk) => options.onOutput!(name, chunk)) : undefined;
      let finished = false;
      const finish = (): void => {
        if (finished) return;
        finished = true;
        stream.off('data', onData);
        const done = async (): Promise<void> => {
          await pump?.idle();
          if (c.dropped > 0 && options.onOutput) {
            await Promise.resolve(options.onOutput(name, Buffer.from(truncationMarker(c.dropped)))).catch(() => undefined);
          }
          resolve(c);
        };
        void done();
      };
      const onData = (chunk: Buffer): void => {
        totalRead += chunk.length;
        if (totalRead > ceiling && ended === undefined) stop('output');
        const room = options.outputBytes - c.keptBytes;
        const keep = room <= 0 ? undefined : chunk.length <= room ? chunk : chunk.subarray(0, room);
        if (keep) {
          c.kept.push(keep);
          c.keptBytes += keep.length;
        }
        c.dropped += chunk.length - (keep?.length ?? 0);
        if (keep) pump?.push(keep);
      };
      stream.on('data', onData);
      stream.once('end', finish);
      stream.once('close', finish);
      stream.once('error', finish);
      // A stream that ended or was destroyed before this (a pipe of a process
      // that is already gone) will never emit those events again.
      if (stream.readableEnded || stream.destroyed) finish();
    });
  };

  const [exit, out, err] = await Promise.all([
    proc.exited.catch((): ProcessExit => ({ code: null, signal: 'SIGKILL' })),
    collect('stdout', proc.stdout),
    collect('stderr', proc.stderr),
  ]).finally(() => {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  });

  return {
    exitCode: exit.code,
    signal: exit.signal,
    stdout: assemble(out),
    stderr: assemble(err),
    stdoutTruncated: out.dropped > 0,
    stderrTruncated: err.dropped > 0,
    ended: ended ?? exit.limit ?? 'exited',
    durationMs: Date.now() - startedAt,
  };
}

function assemble(c: Collected): Buffer {
  const parts = c.dropped > 0 ? [...c.kept, Buffer.from(truncationMarker(c.dropped))] : c.kept;
  return Buffer.concat(parts);
}

function writeStdin(proc: SandboxProcess, input: string | Uint8Array | undefined): void {
  // A process that exits without reading its stdin makes the write fail with
  // EPIPE; that is the process's choice, not a runner error.
  proc.stdin.on('error', () => undefined);
  if (input !== undefined && input.length > 0) proc.stdin.end(input);
  else proc.stdin.end();
}

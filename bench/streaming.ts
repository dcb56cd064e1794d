import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { BenchStack } from './stack.js';

/**
 * Output streaming throughput into the control plane: a bash call writes
 * `mb` MB of text; the bytes after the first output event over the time from
 * the first output event to the last, as an SSE client of the control plane
 * receives and parses them. Returns MB/s per run.
 */
export async function measureStreaming(stack: BenchStack, runnerId: string, mb: number, runs = 3): Promise<number[]> {
  const out: number[] = [];
  const runner = stack.runners.find((r) => r.id === runnerId)?.child.pid;
  const bytes = mb * 1024 * 1024;
  for (let i = 0; i < runs; i++) {
    const started = await stack.request('POST', `/v1/runners/${runnerId}/tool-calls?wait=false`, {
      name: 'bash',
      // The short pause lets the SSE client subscribe first: the control plane replays only the start of a call's output.
      input: { command: `sleep 0.3; yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c ${bytes}` },
      timeoutMs: 120_000,
    });
    const res = await openEvents(`${stack.cp.url}/v1/tool-calls/${started.body.id}/events`, stack.cp.adminToken);
    const events = new SseEvents();
    let seen = 0;
    let first = 0;
    let firstBytes = 0;
    let last = 0;
    let replayed = false;
    let cpuFirst: NodeJS.CpuUsage | undefined;
    let cpuLast = { user: 0, system: 0 };
    let runnerFirst = NaN;
    let runnerLast = NaN;
    let reads = 0;
    await new Promise<void>((resolve, reject) => {
      res.on('data', (chunk: Buffer) => {
        reads++;
        for (const event of events.push(chunk)) {
          if (event.type === 'output') {
            const now = performance.now();
            const n = (JSON.parse(event.data) as { data: string }).data.length;
            if (!first) {
              cpuFirst = process.cpuUsage();
              runnerFirst = runnerCpuMs(runner);
              first = now;
              firstBytes = n;
              // Output in the very first read came from the replay buffer, not live: the head start was too short.
              replayed = reads === 1;
            }
            last = now;
            seen += n;
            // CPU time is the steadier figure on a shared machine; the runner's is read from /proc every few events.
            cpuLast = process.cpuUsage(cpuFirst);
            if (events.count++ % 8 === 0) runnerLast = runnerCpuMs(runner);
          } else if (event.type === 'result') {
            res.destroy();
            resolve();
          }
        }
      });
      res.once('end', resolve);
      res.once('error', reject);
    });
    // The runner streams up to the call's output cap; throughput counts what arrived.
    if (seen < bytes) process.stderr.write(`streaming: ${seen} of ${bytes} bytes arrived (the output cap)\n`);
    const perMb = (ms: number) => (ms / (seen / 1024 / 1024)).toFixed(1);
    process.stderr.write(
      `streaming: run ${i + 1}: ${seen} bytes in ${events.count} output events, ${(last - first).toFixed(1)} ms first to last; ` +
        `CPU ms/MB: control plane + client ${perMb((cpuLast.user + cpuLast.system) / 1000)}, runner ${perMb(runnerLast - runnerFirst)}\n`,
    );
    if (replayed) process.stderr.write('streaming: output was already buffered when the client subscribed; the figure is not a live reading\n');
    // The first event's bytes arrived before the clock started: only what came after it counts.
    out.push((seen - firstBytes) / 1024 / 1024 / ((last - first) / 1000));
  }
  return out;
}

/** CPU time (user + system) a process has used so far, in ms; NaN where /proc cannot tell. */
function runnerCpuMs(pid: number | undefined): number {
  try {
    // Fields after the command name: utime and stime are the 12th and 13th, in clock ticks (100 per second on Linux).
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

/**
 * Opens an SSE stream with node:http: its body arrives as Buffers, without
 * the WHATWG stream machinery of fetch (which cost the bench's own process
 * more than parsing did).
 */
function openEvents(url: string, token: string): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`events: HTTP ${res.statusCode}`));
      else resolve(res);
    });
    req.once('error', reject);
  });
}

/**
 * A server-sent events parser over bytes: it looks for the blank line that
 * ends an event in each new chunk only (a string buffer re-sliced per event
 * costs more than the stream it measures), and decodes each event once.
 */
class SseEvents {
  /** Output events seen (counted by the caller). */
  count = 0;
  private held: Buffer[] = [];
  /** Whether the bytes held end with a newline (an event end split across reads). */
  private heldEndsNewline = false;

  push(value: Uint8Array): Array<{ type: string; data: string }> {
    const chunk = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    const out: Array<{ type: string; data: string }> = [];
    let start = 0;
    if (this.heldEndsNewline && chunk[0] === 10) {
      out.push(parseEvent(Buffer.concat(this.held).subarray(0, -1)));
      this.held = [];
      start = 1;
    }
    for (let cut = chunk.indexOf('\n\n', start); cut >= 0; cut = chunk.indexOf('\n\n', start)) {
      const part = chunk.subarray(start, cut);
      out.push(parseEvent(this.held.length ? Buffer.concat([...this.held, part]) : part));
      this.held = [];
      start = cut + 2;
    }
    if (start < chunk.length) {
      this.held.push(chunk.subarray(start));
      this.heldEndsNewline = chunk[chunk.length - 1] === 10;
    } else {
      this.heldEndsNewline = false;
    }
    return out;
  }
}

/** One event's `event:` and `data:` fields (the control plane writes one data line). */
function parseEvent(bytes: Buffer): { type: string; data: string } {
  const text = bytes.toString('utf8');
  let type = 'message';
  let data = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('event: ')) type = line.slice(7);
    else if (line.startsWith('data: ')) data = data ? `${data}\n${line.slice(6)}` : line.slice(6);
  }
  return { type, data };
}

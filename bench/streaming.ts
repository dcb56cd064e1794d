import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { BenchStack } from './stack.js';
import type { StreamReading, StreamRequest } from './sse-client.js';

/**
 * Output streaming throughput into the control plane: a bash call writes
 * `mb` MB of text; the bytes after the first output event over the time from
 * the first output event to the last, as an SSE client of the control plane
 * receives and parses them. The client is a process of its own
 * (bench/sse-client.ts), so the control plane's process does only the control
 * plane's work. Returns MB/s per run.
 */
export async function measureStreaming(stack: BenchStack, runnerId: string, mb: number, runs = 3): Promise<number[]> {
  const out: number[] = [];
  const runner = stack.runners.find((r) => r.id === runnerId)?.child.pid;
  const bytes = mb * 1024 * 1024;
  const client = fork(new URL('./sse-client.js', import.meta.url), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    for (let i = 0, tries = 0; i < runs; i++) {
      const started = await stack.request('POST', `/v1/runners/${runnerId}/tool-calls?wait=false`, {
        name: 'bash',
        // The pause lets the SSE client subscribe first: the control plane replays only the start of a call's output.
        input: { command: `sleep 1; yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c ${bytes}` },
        timeoutMs: 120_000,
      });
      // CPU of the control plane (this process) and of the runner, sampled on
      // a timer and read at the client's first and last output event.
      const samples: CpuSample[] = [];
      const sample = () => samples.push({ at: performance.timeOrigin + performance.now(), cp: cpuMs(process.cpuUsage()), runner: runnerCpuMs(runner) });
      sample();
      const timer = setInterval(sample, 20);
      let r: StreamReading;
      try {
        r = await readStream(client, { url: `${stack.cp.url}/v1/tool-calls/${started.body.id}/events`, token: stack.cp.adminToken });
      } finally {
        clearInterval(timer);
      }
      sample();
      if (r.replayed || r.gap) {
        // A loaded machine can delay the client's subscription past the pause: such a run measured a replay, not the stream.
        process.stderr.write(`streaming: the client subscribed after the output had begun (${r.gap ? 'events missed' : 'replayed'}); ${++tries < 3 ? 'run again' : 'not counted'}\n`);
        if (tries < 3) i--;
        continue;
      }
      // The runner streams up to the call's output cap; throughput counts what arrived.
      if (r.seen < bytes) process.stderr.write(`streaming: ${r.seen} of ${bytes} bytes arrived (the output cap)\n`);
      const mbSeen = r.seen / 1024 / 1024;
      const perMb = (ms: number) => (ms / mbSeen).toFixed(1);
      const [a, b] = [at(samples, r.first), at(samples, r.last)];
      process.stderr.write(
        `streaming: run ${i + 1}: ${r.seen} bytes in ${r.events} output events, ${(r.last - r.first).toFixed(1)} ms first to last; ` +
          `CPU ms/MB: control plane ${perMb(b.cp - a.cp)}, SSE client ${perMb(r.cpuMs)}, runner ${perMb(b.runner - a.runner)}\n`,
      );
      // The first event's bytes arrived before the clock started: only what came after it counts.
      out.push((r.seen - r.firstBytes) / 1024 / 1024 / ((r.last - r.first) / 1000));
    }
  } finally {
    client.kill();
  }
  return out;
}

interface CpuSample {
  at: number;
  cp: number;
  runner: number;
}

/** The last sample at or before `time` (the first one when none is). */
function at(samples: CpuSample[], time: number): CpuSample {
  let found = samples[0]!;
  for (const s of samples) if (s.at <= time) found = s;
  return found;
}

function readStream(client: ChildProcess, req: StreamRequest): Promise<StreamReading> {
  return new Promise((resolve, reject) => {
    client.once('message', (msg: { ok: true; reading: StreamReading } | { ok: false; error: string }) =>
      msg.ok ? resolve(msg.reading) : reject(new Error(`streaming client: ${msg.error}`)),
    );
    client.once('exit', (code) => reject(new Error(`streaming client exited (${code})`)));
    client.send(req);
  });
}

function cpuMs(u: NodeJS.CpuUsage): number {
  return (u.user + u.system) / 1000;
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

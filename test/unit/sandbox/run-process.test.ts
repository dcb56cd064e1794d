import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import type { ProcessExit, SandboxProcess } from '../../../src/sandbox/driver.js';
import { runProcess, truncationMarker } from '../../../src/sandbox/run-process.js';

/** A real host process (its own process group) as a SandboxProcess. */
function hostProcess(script: string): SandboxProcess & { pid: number } {
  const child = spawn('/bin/sh', ['-c', script], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  const exited = new Promise<ProcessExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return {
    pid: child.pid!,
    stdin: child.stdin,
    stdout: child.stdout,
    stderr: child.stderr,
    exited,
    kill: () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    },
  };
}

const base = { outputBytes: 1024 * 1024, wallTimeMs: 30_000 };

describe('runProcess', () => {
  it('ends, not hangs, for a process whose pipes were closed before it was run (its spawner died)', async () => {
    const proc = hostProcess('sleep 0.2');
    // Closed by the runner's side before any end of file arrived, as the spawner's loss does.
    proc.stdout.destroy();
    proc.stderr.destroy();
    await proc.exited;
    expect(proc.stdout.destroyed).toBe(true);
    expect(proc.stdout.readableEnded).toBe(false);
    const r = await runProcess(proc, base);
    expect(r).toMatchObject({ exitCode: 0, ended: 'exited' });
    expect(r.stdout.length).toBe(0);
  });

  it('passes stdin and returns stdout, stderr and the exit code', async () => {
    const r = await runProcess(hostProcess('cat; echo err >&2; exit 3'), { ...base, stdin: 'hello' });
    expect(r).toMatchObject({ exitCode: 3, ended: 'exited', stdoutTruncated: false, stderrTruncated: false });
    expect(r.stdout.toString()).toBe('hello');
    expect(r.stderr.toString()).toBe('err\n');
  });

  it('cuts each stream at the cap with a visible marker, and streams the same bytes', async () => {
    const streamed: Record<string, string> = { stdout: '', stderr: '' };
    const r = await runProcess(hostProcess('head -c 5000 /dev/zero | tr "\\0" a; echo short >&2'), {
      ...base,
      outputBytes: 1000,
      onOutput: (s, c) => {
        streamed[s] += c.toString();
      },
    });
    expect(r.stdout.toString()).toBe('a'.repeat(1000) + truncationMarker(4000));
    expect(r.stdoutTruncated).toBe(true);
    expect(r.stderr.toString()).toBe('short\n');
    expect(streamed.stdout).toBe(r.stdout.toString());
    expect(r.ended).toBe('exited');
  });

  it('kills a flood at the output ceiling and ends as output', async () => {
    const r = await runProcess(hostProcess('cat /dev/zero'), { ...base, outputBytes: 100, outputCeilingBytes: 1024 * 1024 });
    expect(r.ended).toBe('output');
    expect(r.signal).toBe('SIGKILL');
    expect(r.stdout.length).toBe(100 + truncationMarker(Number(/(\d+) bytes/.exec(r.stdout.toString())![1])).length);
  });

  it('ends at the deadline as wall_time', async () => {
    const r = await runProcess(hostProcess('echo go; sleep 600'), { ...base, wallTimeMs: 200 });
    expect(r.ended).toBe('wall_time');
    expect(r.stdout.toString()).toBe('go\n');
  });

  it('ends as cancelled when the signal aborts, also when aborted before the start', async () => {
    const ac = new AbortController();
    const r = runProcess(hostProcess('echo go; sleep 600'), { ...base, signal: ac.signal, onOutput: () => ac.abort() });
    expect((await r).ended).toBe('cancelled');
    const r2 = await runProcess(hostProcess('sleep 600'), { ...base, signal: AbortSignal.abort() });
    expect(r2.ended).toBe('cancelled');
  });

  it('reports the limit the driver saw', async () => {
    const p = hostProcess('exit 1');
    const r = await runProcess({ ...p, exited: p.exited.then((e) => ({ ...e, limit: 'disk' as const })) }, base);
    expect(r.ended).toBe('disk');
  });

  it('pauses the process while the consumer is slow (backpressure)', async () => {
    const p = hostProcess('exec head -c 8000000 /dev/zero');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let received = 0;
    let calls = 0;
    let firstChunk!: () => void;
    const gotFirst = new Promise<void>((r) => (firstChunk = r));
    const run = runProcess(p, {
      ...base,
      outputBytes: 16 * 1024 * 1024,
      onOutput: async (_s, c) => {
        received += c.length;
        calls += 1;
        if (calls === 1) {
          firstChunk();
          await gate;
        }
      },
    });
    await gotFirst;
    // The child fills its stdout (a unix socket pair under Node) and then sleeps
    // in the kernel's send path until we read again.
    for (;;) {
      const wchan = await readFile(`/proc/${p.pid}/wchan`, 'utf8').catch(() => '');
      if (/pipe_write|sock_alloc_send|unix_stream_sendmsg|wait_for_unix/.test(wchan)) break;
      await new Promise((r) => setImmediate(r));
    }
    expect(received).toBeLessThan(8_000_000);
    release();
    const r = await run;
    expect(r.ended).toBe('exited');
    expect(received).toBe(8_000_000);
  });
});

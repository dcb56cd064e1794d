import type { BenchStack } from './stack.js';

/**
 * Output streaming throughput into the control plane: a bash call writes
 * `mb` MB of text; the time from its first output event to its last, as an
 * SSE client of the control plane sees them. Returns MB/s per run.
 */
export async function measureStreaming(stack: BenchStack, runnerId: string, mb: number, runs = 3): Promise<number[]> {
  const out: number[] = [];
  const bytes = mb * 1024 * 1024;
  for (let i = 0; i < runs; i++) {
    const started = await stack.request('POST', `/v1/runners/${runnerId}/tool-calls?wait=false`, {
      name: 'bash',
      // The short pause lets the SSE client subscribe first: the control plane replays only the start of a call's output.
      input: { command: `sleep 0.3; yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c ${bytes}` },
      timeoutMs: 120_000,
    });
    const res = await fetch(`${stack.cp.url}/v1/tool-calls/${started.body.id}/events`, { headers: { authorization: `Bearer ${stack.cp.adminToken}` } });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let pending = '';
    let seen = 0;
    let first = 0;
    let last = 0;
    let ended = false;
    while (!ended) {
      const { done, value } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true });
      let cut: number;
      while ((cut = pending.indexOf('\n\n')) >= 0) {
        const event = pending.slice(0, cut);
        pending = pending.slice(cut + 2);
        if (event.startsWith('event: output\n')) {
          const now = performance.now();
          first ||= now;
          last = now;
          seen += (JSON.parse(event.slice(event.indexOf('data: ') + 6)) as { data: string }).data.length;
        } else if (event.startsWith('event: result\n')) {
          ended = true;
        }
      }
    }
    await reader.cancel().catch(() => undefined);
    // The runner streams up to the call's output cap; throughput counts what arrived.
    if (seen < bytes) process.stderr.write(`streaming: ${seen} of ${bytes} bytes arrived (the output cap)\n`);
    out.push(seen / 1024 / 1024 / ((last - first) / 1000));
  }
  return out;
}

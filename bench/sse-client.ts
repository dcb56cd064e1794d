import http from 'node:http';

/**
 * The streaming bench's SSE client, run as its own process (bench/streaming.ts
 * forks it): in the bench's process it shared the control plane's event loop,
 * so its parsing and its CPU readings were counted as the control plane's
 * work, and the control plane's handling of the 16 MB result could hold back
 * the reading of the last output events. A real client is another program.
 *
 * It takes `{url, token}` over IPC, reads the call's event stream to the
 * result event, and answers with a StreamReading.
 */
export interface StreamReading {
  /** Output bytes (characters of `data`) seen in output events. */
  seen: number;
  /** Of them, in the first output event (which starts the clock). */
  firstBytes: number;
  events: number;
  /** Wall clock (performance.timeOrigin + now, ms) of the first and the last output event. */
  first: number;
  last: number;
  /** The first output event came in the first read: it was replayed, not live. */
  replayed: boolean;
  /**
   * Events were missing (a gap in seq): the client subscribed after more than
   * the control plane's replay buffer had gone by, and what came between was
   * not replayed to it.
   */
  gap: boolean;
  /** This process's CPU time from the first to the last output event, ms. */
  cpuMs: number;
}

export interface StreamRequest {
  url: string;
  token: string;
}

async function read(req: StreamRequest): Promise<StreamReading> {
  const res = await openEvents(req.url, req.token);
  const events = new SseEvents();
  const r: StreamReading = { seen: 0, firstBytes: 0, events: 0, first: 0, last: 0, replayed: false, gap: false, cpuMs: 0 };
  let nextSeq = 0;
  let reads = 0;
  let cpuFirst: NodeJS.CpuUsage | undefined;
  await new Promise<void>((resolve, reject) => {
    res.on('data', (chunk: Buffer) => {
      reads++;
      let lastOutput = false;
      for (const event of events.push(chunk)) {
        if (event.type === 'output') {
          // Parsed as a client would; only the length and the order are used.
          const parsed = JSON.parse(event.data) as { seq: number; data: string };
          const n = parsed.data.length;
          if (parsed.seq !== nextSeq) r.gap = true;
          nextSeq = parsed.seq + 1;
          if (r.events === 0) {
            cpuFirst = process.cpuUsage();
            r.first = performance.timeOrigin + performance.now();
            r.firstBytes = n;
            // Output in the very first read came from the replay buffer, not live: the head start was too short.
            r.replayed = reads === 1;
          }
          r.events++;
          r.seen += n;
          lastOutput = true;
        } else if (event.type === 'result') {
          res.destroy();
          resolve();
        }
      }
      // Once per read, not per event: the clock and the CPU reading are not free either.
      if (lastOutput) {
        r.last = performance.timeOrigin + performance.now();
        const cpu = process.cpuUsage(cpuFirst);
        r.cpuMs = (cpu.user + cpu.system) / 1000;
      }
    });
    res.once('end', resolve);
    res.once('error', reject);
  });
  return r;
}

/**
 * Opens an SSE stream with node:http: its body arrives as Buffers, without
 * the WHATWG stream machinery of fetch (which cost more than parsing did).
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
  private held: Buffer[] = [];
  /** Whether the bytes held end with a newline (an event end split across reads). */
  private heldEndsNewline = false;

  push(chunk: Buffer): Array<{ type: string; data: string }> {
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

process.on('message', (req: StreamRequest) => {
  read(req).then(
    (reading) => process.send!({ ok: true, reading }),
    (err: unknown) => process.send!({ ok: false, error: String(err) }),
  );
});

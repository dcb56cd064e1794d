import type { ServerResponse } from 'node:http';

/**
 * A server-sent events response. Events written in one tick leave in one
 * write: output frames that arrive together (one socket read on the runner's
 * connection carries several) cost one syscall, not one each.
 */
/** Bytes an SSE client may leave unread before it is let go (memory per client stays bounded). */
export const SSE_MAX_BUFFERED = 64 * 1024 * 1024;

export class SseStream {
  #corked = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly maxBuffered = SSE_MAX_BUFFERED,
  ) {}

  /** Sends the status and headers and a first comment, so the client sees the stream open at once. */
  open(): void {
    this.res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    this.res.write(': connected\n\n');
  }

  /**
   * Writes one event; `json` is its data, already serialised (one line: JSON
   * has no raw newline). A client that leaves more than `maxBuffered` bytes
   * unread gets a last `lagged` event and the stream ends: the control plane
   * never holds an unbounded backlog for it. The call goes on; the client reads
   * the record, or subscribes again (the start of the output is replayed).
   */
  event(name: string, json: string | Buffer): void {
    if (this.res.writableEnded) return;
    if (this.res.writableLength > this.maxBuffered) {
      this.res.write(
        `event: lagged\ndata: ${JSON.stringify({ message: `this client left more than ${this.maxBuffered} bytes of events unread; read faster, or GET the call record` })}\n\n`,
      );
      this.res.end();
      return;
    }
    if (!this.#corked) {
      this.#corked = true;
      this.res.cork();
      process.nextTick(() => {
        this.#corked = false;
        this.res.uncork();
      });
    }
    if (typeof json === 'string') {
      this.res.write(`event: ${name}\ndata: ${json}\n\n`);
      return;
    }
    // Bytes go out as they are, without a copy into a joined string.
    this.res.write(`event: ${name}\ndata: `);
    this.res.write(json);
    this.res.write('\n\n');
  }

  /** Ends the response after what was written. */
  end(): void {
    this.res.end();
  }
}

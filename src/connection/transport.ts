import WebSocket from 'ws';
import { RunnerError } from '../util/errors.js';

/**
 * A message transport: text and binary frames, a heartbeat, a close. The
 * connection's session logic (handshake, acks, reconnect) sits on top and can
 * be driven by an in-memory pair in tests.
 */
export interface Transport {
  /** Sends a frame; resolves once it is handed to the socket (backpressure). */
  send(data: string | Buffer): Promise<void>;
  /** Bytes queued but not yet written to the network. */
  readonly bufferedAmount: number;
  close(code?: number, reason?: string): void;
  /** Drops the connection at once (a missed pong). */
  terminate(): void;
  /** Sends a ping; `onPong` fires when the answer comes. */
  ping(): void;
  onMessage: (data: string | Buffer, binary: boolean) => void;
  onPong: () => void;
  onClose: (code: number, reason: string) => void;
}

/** Opens a WebSocket; rejects with a RunnerError that says what to check. */
export function dialWebSocket(url: string, options: { signal?: AbortSignal; timeoutMs: number }): Promise<Transport> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { handshakeTimeout: options.timeoutMs, maxPayload: 64 * 1024 * 1024, perMessageDeflate: false });
    const onAbort = () => ws.terminate();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    ws.once('open', () => {
      options.signal?.removeEventListener('abort', onAbort);
      resolve(wrap(ws));
    });
    ws.once('error', (err) => {
      options.signal?.removeEventListener('abort', onAbort);
      const code = (err as NodeJS.ErrnoException).code ?? err.message;
      reject(new RunnerError('unreachable', `cannot connect to ${url} (${code})`, { cause: err }));
    });
  });
}

function wrap(ws: WebSocket): Transport {
  // A frame may arrive in the same packet as the upgrade answer, before the
  // caller has set its handler: hold frames until one is set.
  let handler: Transport['onMessage'] | undefined;
  const early: Array<[string | Buffer, boolean]> = [];
  const t: Transport = {
    send(data) {
      return new Promise((resolve, reject) => {
        if (ws.readyState !== WebSocket.OPEN) return reject(new RunnerError('unreachable', 'the connection is closed'));
        ws.send(data, (err) => (err ? reject(err) : resolve()));
      });
    },
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
    close: (code, reason) => ws.close(code, reason),
    terminate: () => ws.terminate(),
    ping: () => {
      try {
        ws.ping();
      } catch {
        // closing already; the close handler takes over
      }
    },
    get onMessage() {
      return handler ?? ((data, binary) => void early.push([data, binary]));
    },
    set onMessage(fn) {
      handler = fn;
      for (const [data, binary] of early.splice(0)) fn(data, binary);
    },
    onPong: () => undefined,
    onClose: () => undefined,
  };
  ws.on('message', (data, isBinary) => {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    t.onMessage(isBinary ? buf : buf.toString('utf8'), isBinary);
  });
  ws.on('pong', () => t.onPong());
  ws.on('error', () => undefined); // 'close' follows every error
  ws.on('close', (code, reason) => t.onClose(code, reason.toString()));
  return t;
}

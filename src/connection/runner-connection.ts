import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import sodium from 'libsodium-wrappers';
import {
  parseControlMessage,
  PROTOCOL_VERSION,
  type ControlMessage,
  type MessageOf,
  type RunnerMessage,
} from '../protocol/index.js';
import { noopLogger, type Logger } from '../util/logger.js';
import { describeError, RunnerError } from '../util/errors.js';
import { Backoff, sleep } from './backoff.js';
import { dialWebSocket, type Transport } from './transport.js';

export type AuthCapabilities = MessageOf<RunnerMessage, 'auth'>['capabilities'];
/** A runner message without the envelope fields the connection fills in. */
export type OutgoingMessage = RunnerMessage extends infer M ? (M extends RunnerMessage ? Omit<M, 'v' | 'id'> : never) : never;

export interface RunnerConnectionOptions {
  url: string;
  runnerId: string;
  signingSecretKey: Uint8Array;
  version: string;
  capabilities: () => AuthCapabilities;
  heartbeatMs: number;
  connectTimeoutMs: number;
  reconnectInitialMs: number;
  reconnectMaxMs: number;
  /** Called for every valid message after the handshake. Must not throw. */
  onMessage: (message: ControlMessage) => void;
  /** Called after each successful handshake with the call ids the control plane already holds. */
  onConnected?: (known: string[]) => void | Promise<void>;
  onDisconnected?: () => void;
  logger?: Logger;
  /** Replaces the WebSocket dialer (tests use an in-memory pair). */
  dial?: (url: string, options: { signal?: AbortSignal; timeoutMs: number }) => Promise<Transport>;
}

/** Bytes queued on the socket above which senders of output wait. */
const HIGH_WATER = 4 * 1024 * 1024;

/**
 * The runner's one outbound connection: dials, proves its identity by signing
 * the control plane's challenge, keeps a heartbeat, and reconnects with capped
 * exponential backoff and full jitter until stopped.
 */
export class RunnerConnection extends EventEmitter {
  private transport: Transport | undefined;
  private ready = false;
  private readonly stopController = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly backoff: Backoff;
  private readonly logger: Logger;
  /** Successful handshakes after the first. */
  reconnects = 0;
  private handshakes = 0;
  /** The last binary frame's send, settled either way (see outputFlushed). */
  private lastBinary: Promise<void> = Promise.resolve();

  constructor(private readonly options: RunnerConnectionOptions) {
    super();
    this.logger = options.logger ?? noopLogger;
    this.backoff = new Backoff(options.reconnectInitialMs, options.reconnectMaxMs);
  }

  get connected(): boolean {
    return this.ready;
  }

  /** Starts the connect loop; returns at once. */
  start(): void {
    this.loop ??= this.run();
  }

  /** Sends a message when connected; returns false when it could not be sent. */
  async send(message: OutgoingMessage): Promise<boolean> {
    const t = this.transport;
    if (!t || !this.ready) return false;
    const full = { v: PROTOCOL_VERSION, id: randomUUID(), ...message };
    try {
      await t.send(JSON.stringify(full));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Sends a message already serialised whole, envelope (v, id) included: a
   * result is serialised once for the journal and the wire.
   */
  async sendSerialized(json: string): Promise<boolean> {
    const t = this.transport;
    if (!t || !this.ready) return false;
    try {
      await t.send(json);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Sends a binary output frame. Waits while the socket holds more than its
   * high-water mark, so a slow control plane pauses the producer.
   */
  async sendBinary(frame: Buffer): Promise<boolean> {
    const t = this.transport;
    if (!t || !this.ready) return false;
    try {
      const sent = t.send(frame);
      this.lastBinary = sent.catch(() => undefined);
      if (t.bufferedAmount > HIGH_WATER) await sent;
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Resolves once the binary frames sent so far are written to the socket (or
   * failed), or after `maxMs`; undefined when nothing is queued. Lets a caller
   * about to block the event loop (a large result) first let queued output go.
   */
  outputFlushed(maxMs: number): Promise<void> | undefined {
    const t = this.transport;
    if (!t || t.bufferedAmount === 0) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, maxMs)));
    return Promise.race([this.lastBinary, late]).finally(() => clearTimeout(timer));
  }

  /** Stops reconnecting and closes the connection. */
  async stop(): Promise<void> {
    this.stopController.abort(new RunnerError('cancelled', 'connection stopped'));
    this.transport?.close(1001, 'runner stopping');
    await this.loop?.catch(() => undefined);
  }

  private async run(): Promise<void> {
    const stop = this.stopController.signal;
    while (!stop.aborted) {
      try {
        await this.connectOnce(stop);
      } catch (err) {
        if (stop.aborted) break;
        this.logger.warn({ err: describeError(err) }, 'control plane connection failed');
      }
      if (stop.aborted) break;
      const delay = this.backoff.next();
      this.logger.info({ delayMs: delay, attempt: this.backoff.attempts }, 'reconnecting to the control plane');
      await sleep(delay, stop).catch(() => undefined);
    }
  }

  /** One connection's life: handshake, then messages until it closes. */
  private async connectOnce(stop: AbortSignal): Promise<void> {
    const dial = this.options.dial ?? dialWebSocket;
    const transport = await dial(this.options.url, { signal: stop, timeoutMs: this.options.connectTimeoutMs });
    this.transport = transport;
    let closed!: (info: { code: number; reason: string }) => void;
    const closedPromise = new Promise<{ code: number; reason: string }>((r) => (closed = r));
    let heartbeat: NodeJS.Timeout | undefined;
    let awaitingPong = false;
    transport.onClose = (code, reason) => closed({ code, reason });
    transport.onPong = () => {
      awaitingPong = false;
    };
    try {
      await this.handshake(transport, closedPromise);
      this.ready = true;
      this.backoff.reset();
      if (this.handshakes++ > 0) this.reconnects++;
      this.logger.info({ url: this.options.url }, 'connected to the control plane');
      heartbeat = setInterval(() => {
        if (awaitingPong) {
          this.logger.warn('control plane missed a heartbeat; dropping the connection');
          transport.terminate();
          return;
        }
        awaitingPong = true;
        transport.ping();
      }, this.options.heartbeatMs);
      const { code, reason } = await closedPromise;
      // Closed by our own stop(): expected, not a warning.
      if (this.stopController.signal.aborted) this.logger.info({ code, reason }, 'control plane connection closed');
      else this.logger.warn({ code, reason }, 'control plane connection closed');
    } finally {
      clearInterval(heartbeat);
      const wasReady = this.ready;
      this.ready = false;
      this.transport = undefined;
      transport.terminate();
      if (wasReady) this.options.onDisconnected?.();
    }
  }

  private async handshake(transport: Transport, closed: Promise<{ code: number; reason: string }>): Promise<void> {
    await sodium.ready;
    const timeout = AbortSignal.timeout(this.options.connectTimeoutMs);
    // `onMatch` runs synchronously with the matching frame: frames that came in the
    // same packet right after it must already reach the next handler.
    const step = <T>(pick: (m: ControlMessage) => T | undefined, onMatch?: () => void): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        const onTimeout = () => reject(new RunnerError('unreachable', 'the control plane did not finish the handshake in time'));
        timeout.addEventListener('abort', onTimeout, { once: true });
        void closed.then(({ code, reason }) =>
          reject(new RunnerError('unreachable', `the control plane closed the connection during the handshake (${code} ${reason})`)),
        );
        transport.onMessage = (data, binary) => {
          if (binary) return;
          const parsed = parseControlMessage(data as string);
          if (!parsed.ok) return;
          const got = pick(parsed.message);
          if (got !== undefined) {
            timeout.removeEventListener('abort', onTimeout);
            onMatch?.();
            resolve(got);
          }
        };
      });
    const hello = await step((m) => (m.type === 'hello' ? m : undefined));
    const payload = `sandbox-runner-auth:v1:${this.options.runnerId}:${hello.challenge}`;
    const signature = sodium.crypto_sign_detached(payload, this.options.signingSecretKey);
    const welcomeP = step(
      (m) => (m.type === 'welcome' ? m : undefined),
      () => {
        // A tool.call may follow the welcome in the same packet: it must not be dropped.
        transport.onMessage = (data, binary) => this.receive(data, binary);
        this.ready = true;
      },
    );
    await transport.send(
      JSON.stringify({
        v: PROTOCOL_VERSION,
        id: randomUUID(),
        type: 'auth',
        runnerId: this.options.runnerId,
        signature: Buffer.from(signature).toString('base64'),
        version: this.options.version,
        capabilities: this.options.capabilities(),
      }),
    );
    const welcome = await welcomeP;
    await this.options.onConnected?.(welcome.known);
  }

  /** Every frame after the handshake: a bad one is answered, never thrown. */
  private receive(data: string | Buffer, binary: boolean): void {
    if (binary) {
      void this.send({ type: 'error', code: 'bad_frame', message: 'the runner accepts no binary frames from the control plane' });
      return;
    }
    const parsed = parseControlMessage(data as string);
    if (!parsed.ok) {
      this.logger.warn({ code: parsed.code, error: parsed.message }, 'refused a malformed message from the control plane');
      void this.send({
        type: 'error',
        code: parsed.code,
        message: parsed.message,
        ...(parsed.ref ? { ref: parsed.ref } : {}),
      });
      return;
    }
    try {
      this.options.onMessage(parsed.message);
    } catch (err) {
      this.logger.error({ err: describeError(err) }, 'message handler failed');
    }
  }
}

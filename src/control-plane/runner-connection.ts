import { randomBytes } from 'node:crypto';
import sodium from 'libsodium-wrappers';
import type { WebSocket } from 'ws';
import {
  PROTOCOL_VERSION,
  decodeOutputFrame,
  parseRunnerMessage,
  type ControlMessage,
  type MessageOf,
  type OutputFrame,
  type RunnerMessage,
  type WireErrorCode,
} from '../protocol/index.js';
import type { Logger } from '../util/logger.js';
import type { RunnerRecord } from './runner-registry.js';

export type AuthMessage = MessageOf<RunnerMessage, 'auth'>;
/** Messages a runner may send once authenticated. */
export type RunnerEvent = Exclude<RunnerMessage, AuthMessage>;

/** Control-plane messages that make a runner act; these pass through the signer (issue 4). */
export type SignableMessage = MessageOf<
  ControlMessage,
  'tool.call' | 'tool.cancel' | 'session.open' | 'session.checkpoint' | 'session.restore' | 'session.close'
>;
/**
 * Signs a message for one runner, synchronously (libsodium is ready before any
 * socket opens); the default returns it unchanged. `secretKey` is the control
 * plane's Ed25519 secret key from its data dir (64 bytes, libsodium layout).
 */
export type MessageSigner = (msg: SignableMessage, target: { runnerId: string; secretKey: Uint8Array }) => SignableMessage;

const SIGNED_TYPES = new Set(['tool.call', 'tool.cancel', 'session.open', 'session.checkpoint', 'session.restore', 'session.close']);

export interface RunnerConnectionOptions {
  socket: WebSocket;
  logger: Logger;
  clock: () => number;
  heartbeatMs: number;
  authTimeoutMs: number;
  signMessage: MessageSigner;
  secretKey: Uint8Array;
  findRunner(id: string): RunnerRecord | undefined;
  /** Called after a good `auth`; returns the call ids for `welcome.known`. */
  onAuthenticated(conn: RunnerConnection, auth: AuthMessage): Promise<string[]>;
  /** Called once the welcome is sent. */
  onReady(conn: RunnerConnection): void;
  onMessage(conn: RunnerConnection, msg: RunnerEvent): void;
  onOutputFrame(conn: RunnerConnection, frame: OutputFrame): void;
  onClose(conn: RunnerConnection): void;
}

/** A fresh message id for messages the control plane sends. */
export function messageId(): string {
  return `msg_${randomBytes(12).toString('hex')}`;
}

/**
 * One runner socket: the challenge handshake, the heartbeat, and frame parsing.
 * A bad frame is answered with an `error` naming the field and the socket
 * carries on; only a failed handshake or a missed pong ends it.
 */
export class RunnerConnection {
  readonly #o: RunnerConnectionOptions;
  readonly #challenge = randomBytes(32).toString('base64');
  #runnerId: string | null = null;
  /** Messages sent after auth and before the welcome went out; flushed right after it. */
  #beforeWelcome: object[] | null = [];
  #alive = true;
  #heartbeat: NodeJS.Timeout | undefined;
  #authTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: RunnerConnectionOptions) {
    this.#o = options;
  }

  /** The authenticated runner, or null during the handshake. */
  get runnerId(): string | null {
    return this.#runnerId;
  }

  start(): void {
    const { socket } = this.#o;
    socket.on('message', (data, isBinary) => this.#onFrame(data as Buffer | Buffer[] | ArrayBuffer, isBinary));
    socket.on('pong', () => {
      this.#alive = true;
    });
    socket.on('close', () => this.#onClose());
    socket.on('error', (err) => this.#o.logger.warn({ err }, 'runner socket error'));
    this.#heartbeat = setInterval(() => {
      if (!this.#alive) {
        this.#o.logger.warn({ runnerId: this.#runnerId }, 'runner missed a heartbeat; dropping the connection');
        socket.terminate();
        return;
      }
      this.#alive = false;
      socket.ping();
    }, this.#o.heartbeatMs);
    this.#authTimer = setTimeout(() => {
      this.sendError('unauthenticated', `send auth within ${this.#o.authTimeoutMs} ms of hello`);
      socket.close(4401, 'unauthenticated');
    }, this.#o.authTimeoutMs);
    this.#sendRaw({ v: PROTOCOL_VERSION, id: messageId(), type: 'hello', challenge: this.#challenge, serverTime: this.#o.clock() });
  }

  /** Sends a message (signing those that make the runner act); false when the socket is not open. */
  send(msg: ControlMessage): boolean {
    if (this.#runnerId === null) return false;
    const out = SIGNED_TYPES.has(msg.type) ? this.#o.signMessage(msg as SignableMessage, { runnerId: this.#runnerId, secretKey: this.#o.secretKey }) : msg;
    // Authenticated but not yet welcomed: the runner would not read it yet. Calls
    // and cancels are sent again anyway once the welcome is out (onReady
    // redelivers everything not accepted), so only the rest waits here; a
    // second copy of a call would only be deduplicated by the runner.
    if (this.#beforeWelcome) {
      if (msg.type !== 'tool.call' && msg.type !== 'tool.cancel') this.#beforeWelcome.push(out);
      return this.#o.socket.readyState === this.#o.socket.OPEN;
    }
    return this.#sendRaw(out);
  }

  /** Sends a protocol `error`. Wire errors go back even before auth. */
  sendError(code: WireErrorCode, message: string, ref?: string): void {
    this.#sendRaw({ v: PROTOCOL_VERSION, id: messageId(), type: 'error', code, message, ...(ref ? { ref } : {}) });
  }

  close(code: number, reason: string): void {
    this.#o.socket.close(code, reason);
  }

  #sendRaw(msg: object): boolean {
    if (this.#o.socket.readyState !== this.#o.socket.OPEN) return false;
    this.#o.socket.send(JSON.stringify(msg));
    return true;
  }

  #onFrame(data: Buffer | Buffer[] | ArrayBuffer, isBinary: boolean): void {
    const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    if (this.#runnerId !== null) this.#alive = true;
    if (isBinary) {
      if (this.#runnerId === null) return this.#refuse('send auth before any output');
      const frame = decodeOutputFrame(buf);
      if ('error' in frame) {
        this.#o.logger.warn({ runnerId: this.#runnerId, reason: frame.error }, 'bad binary frame from runner');
        return this.sendError('bad_frame', frame.error);
      }
      return this.#o.onOutputFrame(this, frame);
    }
    const parsed = parseRunnerMessage(buf.toString('utf8'));
    if (!parsed.ok) {
      this.#o.logger.warn({ runnerId: this.#runnerId, code: parsed.code, reason: parsed.message }, 'bad frame from runner');
      return this.sendError(parsed.code, parsed.message, parsed.ref);
    }
    const msg = parsed.message;
    if (this.#runnerId === null) {
      if (msg.type !== 'auth') return this.#refuse(`send auth first, not ${msg.type}`);
      return void this.#authenticate(msg);
    }
    if (msg.type === 'auth') return this.sendError('bad_message', 'type: already authenticated; auth is sent once per connection', msg.id);
    this.#o.onMessage(this, msg);
  }

  async #authenticate(auth: AuthMessage): Promise<void> {
    clearTimeout(this.#authTimer);
    const runner = this.#o.findRunner(auth.runnerId);
    if (!runner) return this.#refuse('this runner id is not paired with this control plane; pair it again with sandbox-runner pair');
    if (!verifyAuth(runner.signingPublicKey, auth.runnerId, this.#challenge, auth.signature)) {
      return this.#refuse('the auth signature does not verify with the key registered at pairing; pair this runner again if its keys changed');
    }
    this.#runnerId = runner.id;
    let known: string[];
    try {
      known = await this.#o.onAuthenticated(this, auth);
    } catch (err) {
      this.#o.logger.error({ err, runnerId: runner.id }, 'could not record the runner connection');
      this.sendError('internal', 'the control plane could not record this connection; it will be retried on reconnect');
      this.close(1011, 'internal');
      return;
    }
    if (this.#closed) return;
    this.#sendRaw({ v: PROTOCOL_VERSION, id: messageId(), type: 'welcome', runnerId: runner.id, heartbeatMs: this.#o.heartbeatMs, known });
    const held = this.#beforeWelcome ?? [];
    this.#beforeWelcome = null;
    for (const m of held) this.#sendRaw(m);
    this.#o.onReady(this);
  }

  #refuse(message: string): void {
    this.#o.logger.warn({ reason: message }, 'runner refused at handshake');
    this.sendError('unauthenticated', message);
    this.close(4401, 'unauthenticated');
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#authTimer);
    this.#o.onClose(this);
  }
}

/** Checks the runner's detached Ed25519 signature over `sandbox-runner-auth:v1:<runnerId>:<challenge>`. */
export function verifyAuth(publicKeyB64: string, runnerId: string, challenge: string, signatureB64: string): boolean {
  try {
    // Buffer's decoder takes padded, unpadded and URL-safe base64 alike.
    const sig = Buffer.from(signatureB64, 'base64');
    const key = Buffer.from(publicKeyB64, 'base64');
    if (sig.length !== sodium.crypto_sign_BYTES || key.length !== sodium.crypto_sign_PUBLICKEYBYTES) return false;
    return sodium.crypto_sign_verify_detached(sig, `sandbox-runner-auth:v1:${runnerId}:${challenge}`, key);
  } catch {
    return false;
  }
}

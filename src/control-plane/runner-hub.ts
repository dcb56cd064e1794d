import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { ControlMessage, OutputFrame } from '../protocol/index.js';
import type { Logger } from '../util/logger.js';
import { RunnerConnection, type AuthMessage, type MessageSigner, type RunnerEvent } from './runner-connection.js';
import type { RunnerRegistry } from './runner-registry.js';

/** What the hub tells the rest of the control plane. */
export interface HubHandler {
  /** Ids for `welcome.known`: results the control plane already holds for this runner. */
  knownResults(runnerId: string): string[];
  /** The runner is connected and welcomed: send it what it missed. */
  onConnected(runnerId: string): void;
  onMessage(runnerId: string, conn: RunnerConnection, msg: RunnerEvent): void;
  onOutputFrame(runnerId: string, frame: OutputFrame): void;
  onDisconnected(runnerId: string): void;
}

export interface RunnerHubOptions {
  registry: RunnerRegistry;
  logger: Logger;
  clock: () => number;
  heartbeatMs: number;
  signMessage: MessageSigner;
  /** The control plane's Ed25519 secret key, handed to `signMessage`. */
  secretKey: Uint8Array;
  handler: HubHandler;
}

// Large enough for a files-tool download in one frame; ws refuses bigger ones.
const MAX_PAYLOAD = 128 * 1024 * 1024;
const AUTH_TIMEOUT_MS = 10_000;

/**
 * The runners' WebSocket endpoint (`GET /v1/connect`): accepts upgrades, runs
 * each socket's handshake and keeps one live connection per runner, a newer
 * connection replacing an older one.
 */
export class RunnerHub {
  readonly #o: RunnerHubOptions;
  readonly #wss = new WebSocketServer({ noServer: true, maxPayload: MAX_PAYLOAD });
  readonly #live = new Map<string, RunnerConnection>();
  readonly #sockets = new Set<WebSocket>();

  constructor(options: RunnerHubOptions) {
    this.#o = options;
  }

  /** Takes an HTTP upgrade; anything but `/v1/connect` is refused with 404. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path !== '/v1/connect') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws));
  }

  isConnected(runnerId: string): boolean {
    return this.#live.has(runnerId);
  }

  /** Sends to a runner's live connection; false when it has none. */
  send(runnerId: string, msg: ControlMessage): boolean {
    return this.#live.get(runnerId)?.send(msg) ?? false;
  }

  /** Closes every socket (1001 going away) and the server; idempotent. */
  async close(): Promise<void> {
    for (const ws of this.#sockets) ws.close(1001, 'control plane stopping');
    // A runner that does not finish the closing handshake must not hold the stop up.
    const deadline = setTimeout(() => {
      for (const ws of this.#sockets) ws.terminate();
    }, 2_000);
    await Promise.all(
      [...this.#sockets].map((ws) => (ws.readyState === ws.CLOSED ? undefined : new Promise((r) => ws.once('close', r)))),
    );
    clearTimeout(deadline);
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }

  #accept(ws: WebSocket): void {
    this.#sockets.add(ws);
    ws.once('close', () => this.#sockets.delete(ws));
    const { registry, logger, clock, heartbeatMs, signMessage, handler } = this.#o;
    const conn = new RunnerConnection({
      socket: ws,
      logger,
      clock,
      heartbeatMs,
      authTimeoutMs: AUTH_TIMEOUT_MS,
      signMessage,
      secretKey: this.#o.secretKey,
      findRunner: (id) => registry.get(id),
      onAuthenticated: (c, auth) => this.#onAuthenticated(c, auth),
      onReady: (c) => {
        if (this.#live.get(c.runnerId!) === c) handler.onConnected(c.runnerId!);
      },
      onMessage: (c, msg) => {
        this.#touch(c.runnerId!);
        handler.onMessage(c.runnerId!, c, msg);
      },
      onOutputFrame: (c, frame) => handler.onOutputFrame(c.runnerId!, frame),
      onClose: (c) => this.#onClose(c),
    });
    conn.start();
  }

  async #onAuthenticated(conn: RunnerConnection, auth: AuthMessage): Promise<string[]> {
    const runnerId = conn.runnerId!;
    const old = this.#live.get(runnerId);
    this.#live.set(runnerId, conn);
    if (old && old !== conn) {
      this.#o.logger.info({ runnerId }, 'a newer connection replaces the runner\'s old one');
      old.close(4000, 'replaced by a newer connection');
    }
    const runner = this.#o.registry.get(runnerId)!;
    runner.version = auth.version;
    runner.capabilities = auth.capabilities;
    runner.lastSeenAt = new Date(this.#o.clock()).toISOString();
    await this.#o.registry.save(runner);
    this.#o.logger.info({ runnerId, runnerName: runner.name, version: auth.version }, 'runner connected');
    return this.#o.handler.knownResults(runnerId);
  }

  #touch(runnerId: string): void {
    const runner = this.#o.registry.get(runnerId);
    // Kept in memory per message and written at connect and disconnect: a disk
    // write per output chunk would cost more than the freshness is worth.
    if (runner) runner.lastSeenAt = new Date(this.#o.clock()).toISOString();
  }

  #onClose(conn: RunnerConnection): void {
    const runnerId = conn.runnerId;
    if (runnerId === null || this.#live.get(runnerId) !== conn) return;
    this.#live.delete(runnerId);
    const runner = this.#o.registry.get(runnerId);
    if (runner) {
      runner.lastSeenAt = new Date(this.#o.clock()).toISOString();
      this.#o.registry.save(runner).catch((err) => this.#o.logger.error({ err }, 'could not save the runner record'));
    }
    this.#o.logger.info({ runnerId }, 'runner disconnected');
    this.#o.handler.onDisconnected(runnerId);
  }
}

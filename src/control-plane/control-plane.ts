import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import sodium from 'libsodium-wrappers';
import { signRequestSync } from '../signing/request-signing.js';
import { RunnerError } from '../util/errors.js';
import { noopLogger, type Logger } from '../util/logger.js';
import { KeyedQueue } from './atomic-file.js';
import { AuditStore } from './audit-store.js';
import { CallStore } from './call-store.js';
import {
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_PAIRING_TOKEN_TTL_MS,
  type ControlPlaneOptions,
} from './control-plane-options.js';
import { openDataDir, type DataDir } from './data-dir.js';
import { HttpApi } from './http-api.js';
import { Pairing } from './pairing.js';
import type { RunnerConnection, RunnerEvent } from './runner-connection.js';
import { RunnerHub } from './runner-hub.js';
import { RunnerRegistry } from './runner-registry.js';
import { Sessions } from './sessions.js';
import { ToolCalls } from './tool-calls.js';
import { TraceStore } from './trace-store.js';
import { ControlPlaneTracer } from './tracing.js';

/** The bound address of a started control plane. */
export interface BoundAddress {
  host: string;
  port: number;
}

interface Running {
  dataDir: DataDir;
  server: Server;
  hub: RunnerHub;
  calls: ToolCalls;
  store: CallStore;
  traces: TraceStore;
  tracer: ControlPlaneTracer;
  queue: KeyedQueue;
  address: BoundAddress;
}

/**
 * The reference control plane: pairing, the runners' WebSocket endpoint and the
 * admin HTTP API, with its state in a data directory that survives restarts.
 *
 *   const cp = ControlPlane.create({ listen: { host: '127.0.0.1', port: 0 }, dataDir });
 *   const { port } = await cp.start();
 *   ...
 *   await cp.stop();
 */
export class ControlPlane {
  readonly #o: ControlPlaneOptions;
  readonly #logger: Logger;
  readonly #clock: () => number;
  #running: Running | undefined;
  #starting: Promise<BoundAddress> | undefined;
  #stopping: Promise<void> | undefined;

  private constructor(options: ControlPlaneOptions) {
    this.#o = options;
    this.#logger = options.logger ?? noopLogger;
    this.#clock = options.clock ?? Date.now;
  }

  /** Makes a control plane; nothing is read or bound until `start()`. */
  static create(options: ControlPlaneOptions): ControlPlane {
    return new ControlPlane(options);
  }

  /**
   * Opens the data dir (creating the admin token and signing key on first
   * start), loads the state and listens. Resolves with the bound address.
   * Throws RunnerError `io` when the address cannot be bound.
   */
  start(): Promise<BoundAddress> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  /** The admin bearer token (after `start()`). */
  get adminToken(): string {
    return this.#state().dataDir.adminToken;
  }

  /** Path of the file holding the admin token (after `start()`); print this, never the token. */
  get adminTokenPath(): string {
    return this.#state().dataDir.adminTokenPath;
  }

  /** `http://host:port` of the API (after `start()`). */
  get url(): string {
    const { host, port } = this.#state().address;
    return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  }

  /** base64 Ed25519 public key runners pin at pairing (after `start()`). */
  get signingPublicKey(): string {
    return Buffer.from(this.#state().dataDir.signingKeys.publicKey).toString('base64');
  }

  /** Closes runner sockets, open HTTP connections and the server, then flushes state. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  #state(): Running {
    if (!this.#running) throw new RunnerError('usage', 'the control plane is not started; call start() first');
    return this.#running;
  }

  async #start(): Promise<BoundAddress> {
    const logger = this.#logger;
    const clock = this.#clock;
    const heartbeatMs = this.#o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    const dataDir = await openDataDir(this.#o.dataDir, logger);
    const queue = new KeyedQueue();
    const registry = await RunnerRegistry.load(dataDir.root, queue);
    const pairing = await Pairing.load(dataDir.root, queue, registry, clock, this.#o.pairingTokenTtlMs ?? DEFAULT_PAIRING_TOKEN_TTL_MS);
    const store = await CallStore.load(join(dataDir.root, 'calls'));
    const traces = new TraceStore(join(dataDir.root, 'traces'), logger);
    const audit = new AuditStore(join(dataDir.root, 'audit'), queue);
    const tracer = new ControlPlaneTracer(traces, logger);

    let hub: RunnerHub | undefined;
    const send = (runnerId: string, msg: Parameters<RunnerHub['send']>[1]) => hub?.send(runnerId, msg) ?? false;
    const calls = new ToolCalls({ store, tracer, send, clock, logger });
    const sessions = await Sessions.load(dataDir.root, queue, {
      send,
      clock,
      ...(this.#o.sessionReplyTimeoutMs !== undefined ? { replyTimeoutMs: this.#o.sessionReplyTimeoutMs } : {}),
    });
    const dispatch = (runnerId: string, conn: RunnerConnection, msg: RunnerEvent): void => {
      const failed = (what: string) => (err: unknown) => logger.error({ err, runnerId }, `could not store ${what}; check the data dir is writable`);
      switch (msg.type) {
        case 'tool.accepted':
          return calls.onAccepted(runnerId, msg);
        case 'tool.output':
          return calls.onOutput(runnerId, msg.callId, { seq: msg.seq, stream: msg.stream, data: msg.data });
        case 'tool.result':
          return void calls.onResult(runnerId, conn, msg).catch(failed('a tool result'));
        case 'span':
          return traces.add(msg.spans.map((s) => ({ ...s, source: 'runner' as const, runnerId })));
        case 'audit.checkpoint':
          return void audit
            .add(runnerId, { seq: msg.seq, hash: msg.hash, signature: msg.signature, at: msg.at, receivedAt: new Date(clock()).toISOString() })
            .catch(failed('an audit checkpoint'));
        case 'session.result':
          return sessions.onSessionResult(runnerId, msg);
        case 'error':
          if (sessions.onRunnerError(runnerId, msg)) return;
          return void calls.onRunnerError(runnerId, msg).then((matched) => {
            if (!matched) logger.warn({ runnerId, code: msg.code, reason: msg.message, ref: msg.ref }, 'runner reported an error');
          }, failed('a refused call'));
        case 'ack':
          // Runners acknowledge by call id; nothing here waits on it.
          return;
      }
    };
    hub = new RunnerHub({
      registry,
      logger,
      clock,
      heartbeatMs,
      // Every message that makes a runner act is signed with the key runners pinned at pairing.
      signMessage: this.#o.signMessage ?? ((msg, target) => signRequestSync(msg, { secretKey: target.secretKey, runnerId: target.runnerId, clock: this.#clock })),
      secretKey: dataDir.signingKeys.secretKey,
      handler: {
        knownResults: (runnerId) => calls.knownResults(runnerId),
        onConnected: (runnerId) => calls.onConnected(runnerId),
        onMessage: dispatch,
        onOutputFrame: (runnerId, frame) => calls.onOutputFrame(runnerId, frame),
        onDisconnected: (runnerId) => sessions.onDisconnected(runnerId),
      },
    });
    await sodium.ready;

    const server = createServer();
    const api = new HttpApi({
      ...(this.#o.sseMaxBufferedBytes !== undefined ? { sseMaxBufferedBytes: this.#o.sseMaxBufferedBytes } : {}),
      adminToken: dataDir.adminToken,
      signingPublicKey: Buffer.from(dataDir.signingKeys.publicKey).toString('base64'),
      wsUrlFor: (req) => this.#wsUrlFor(req),
      pairing,
      registry,
      hub,
      calls,
      sessions,
      traces,
      audit,
      flushSpans: () => tracer.flush(),
      logger,
    });
    server.on('request', api.handle);
    server.on('upgrade', (req, socket, head) => hub!.handleUpgrade(req, socket, head));
    const address = await listen(server, this.#o.listen);
    this.#running = { dataDir, server, hub, calls, store, traces, tracer, queue, address };
    logger.info({ url: this.url, dataDir: dataDir.root, runners: registry.list().length }, 'control plane listening');
    return address;
  }

  #wsUrlFor(req: IncomingMessage): string {
    const { host, port } = this.#state().address;
    // Bound to every interface: the runner reached us by some name; hand that back.
    if ((host === '0.0.0.0' || host === '::') && req.headers.host) return `ws://${req.headers.host}/v1/connect`;
    return `ws://${host.includes(':') ? `[${host}]` : host}:${port}/v1/connect`;
  }

  async #stop(): Promise<void> {
    if (this.#starting) await this.#starting.catch(() => undefined);
    const r = this.#running;
    if (!r) return;
    const serverClosed = new Promise<void>((resolve) => r.server.close(() => resolve()));
    await r.hub.close();
    // SSE streams and callers waiting on a result hold connections open.
    r.server.closeAllConnections();
    await serverClosed;
    await r.calls.dispose();
    await r.store.close();
    await r.tracer.shutdown();
    await r.traces.close().catch((err: unknown) => this.#logger.error({ err }, 'could not store spans; check the data dir is writable'));
    await r.queue.drain();
    this.#logger.info('control plane stopped');
  }
}

function listen(server: Server, at: { host: string; port: number }): Promise<BoundAddress> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) =>
      reject(new RunnerError('io', `cannot listen on ${at.host}:${at.port} (${err.code ?? err.message}); pick another --listen address`, { cause: err }));
    server.once('error', onError);
    server.listen(at.port, at.host, () => {
      server.off('error', onError);
      const a = server.address() as AddressInfo;
      resolve({ host: a.address, port: a.port });
    });
  });
}

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { RunnerError } from '../util/errors.js';
import { noopLogger, type Logger } from '../util/logger.js';
import type { RunnerMetrics } from './metrics.js';

/** What /readyz reports. */
export interface Readiness {
  ready: boolean;
  /** Why not ready, one short sentence each ("not connected to the control plane"). */
  reasons: string[];
}

export interface HealthServerOptions {
  /** Default 127.0.0.1: the endpoints carry no secrets but are not meant for the world. */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  metrics: RunnerMetrics;
  readiness: () => Readiness;
  /** What `GET /status` answers as JSON (`sandbox-runner status` reads it); default: 404. Must hold no secret. */
  status?: () => unknown;
  logger?: Logger;
}

/** Where the server listens. */
export interface HealthAddress {
  host: string;
  port: number;
  url: string;
}

/**
 * The operator's endpoints: `/healthz` (200 while the process serves),
 * `/readyz` (200 when it can take calls, else 503 listing why), `/metrics`
 * (Prometheus text format), and `/status` (JSON: what the daemon serves,
 * e.g. the leased Managed Agents sessions) when a status source is given.
 */
export class HealthServer {
  private readonly host: string;
  private readonly port: number;
  private readonly metrics: RunnerMetrics;
  private readonly readiness: () => Readiness;
  private readonly status: (() => unknown) | undefined;
  private readonly logger: Logger;
  private server: Server | undefined;

  constructor(options: HealthServerOptions) {
    this.host = options.host ?? '127.0.0.1';
    this.port = options.port;
    this.metrics = options.metrics;
    this.readiness = options.readiness;
    this.status = options.status;
    this.logger = options.logger ?? noopLogger;
  }

  /** Starts listening. Throws `config_invalid` when the address is taken or cannot be bound. */
  async start(): Promise<HealthAddress> {
    if (this.server) throw new RunnerError('internal', 'the health server is already started; stop it first');
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.logger.error({ err }, 'health endpoint failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('internal error\n');
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, this.host, () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((err: NodeJS.ErrnoException) => {
      throw new RunnerError('config_invalid', `cannot listen on ${this.host}:${this.port} for health and metrics (${err.code ?? 'error'}); choose another address or port`, { cause: err });
    });
    this.server = server;
    const addr = server.address() as AddressInfo;
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    this.logger.info({ address: `${host}:${addr.port}`, url: `http://${host}:${addr.port}` }, 'health and metrics endpoints listening');
    return { host: addr.address, port: addr.port, url: `http://${host}:${addr.port}` };
  }

  /** Stops listening and drops open connections (scrapers keep them alive). Idempotent. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('method not allowed\n');
      return;
    }
    if (path === '/status' && this.status) return send(res, 200, 'application/json; charset=utf-8', `${JSON.stringify(this.status(), null, 2)}\n`);
    switch (path) {
      case '/healthz':
        return send(res, 200, 'text/plain; charset=utf-8', 'ok\n');
      case '/readyz': {
        const r = this.readiness();
        if (r.ready) return send(res, 200, 'text/plain; charset=utf-8', 'ready\n');
        return send(res, 503, 'text/plain; charset=utf-8', `not ready\n${r.reasons.map((reason) => `- ${reason}\n`).join('')}`);
      }
      case '/metrics':
        return send(res, 200, this.metrics.registry.contentType, await this.metrics.registry.metrics());
      default:
        return send(res, 404, 'text/plain; charset=utf-8', `not found: try /healthz, /readyz${this.status ? ', /status' : ''} or /metrics\n`);
    }
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

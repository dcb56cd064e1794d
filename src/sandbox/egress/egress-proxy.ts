import { chmod, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { noopLogger, type Logger } from '../../util/logger.js';
import { EgressPolicy, type EgressPolicyOptions } from './egress-policy.js';
import { createEgressResolver } from './egress-resolver.js';

/**
 * The runner's egress proxy: the only way out of a sandbox that has a network
 * allowlist. Each sandbox gets its own listener on a unix socket (bound into
 * the sandbox, which has no network of its own), so the proxy knows whose
 * policy applies without trusting anything the sandbox says. It speaks HTTP
 * CONNECT (https and anything tunnelled) and absolute-form plain HTTP.
 * Names are resolved here and the checked address is the one dialled, so a
 * DNS answer cannot swap in a blocked address afterwards (rebinding).
 */
export interface EgressProxyOptions {
  logger?: Logger;
  /** CIDRs local policy exempts from the block list for every sandbox (e.g. an internal package mirror). */
  exemptCidrs?: string[];
  /** Cloud metadata addresses may be dialled (local policy `network.allowMetadata`). Default false. */
  allowMetadata?: boolean;
  /** Resolver, for tests; default the hosts file, then DNS through c-ares (createEgressResolver). */
  resolve?: (host: string) => Promise<string[]>;
  /** DNS servers the default resolver asks (`ip` or `ip:port`) instead of /etc/resolv.conf's. */
  dnsServers?: string[];
  /** Time to connect upstream, ms. Default 10 000. */
  connectTimeoutMs?: number;
  /** Open connections one sandbox may hold to its listener (tunnels included). Default 256. */
  maxConnectionsPerSandbox?: number;
}

/** One sandbox's listener. */
export interface EgressListener {
  readonly socketPath: string;
  /** Stops listening and cuts the sandbox's open connections. Idempotent. */
  close(): Promise<void>;
}

export class EgressProxy {
  private readonly logger: Logger;
  private readonly resolve: (host: string) => Promise<string[]>;

  constructor(private readonly options: EgressProxyOptions = {}) {
    this.logger = options.logger ?? noopLogger;
    this.resolve = options.resolve ?? createEgressResolver(options.dnsServers ? { servers: options.dnsServers } : {});
  }

  /** Listens on `socketPath` for one sandbox with its allowlist. */
  async open(socketPath: string, policyOptions: Pick<EgressPolicyOptions, 'allow'> & { sandboxId: string }): Promise<EgressListener> {
    const policy = new EgressPolicy({ allow: policyOptions.allow, exemptCidrs: this.options.exemptCidrs ?? [], allowMetadata: this.options.allowMetadata ?? false });
    const log = this.logger.child({ sandbox: policyOptions.sandboxId });
    const sockets = new Set<Duplex>();
    const track = (s: Duplex): void => {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
    };
    const server = http.createServer((req, res) => void this.forwardHttp(policy, log, req, res, track));
    server.on('connection', track);
    server.on('connect', (req: http.IncomingMessage, client: Duplex, head: Buffer) => void this.tunnel(policy, log, req, client, head, track));
    server.on('clientError', (_err, s) => s.destroy());
    // Each connection costs the runner one fd (two with its upstream), and fds are shared by every
    // sandbox: without a cap one sandbox could open connections until the runner has none left.
    server.maxConnections = this.options.maxConnectionsPerSandbox ?? 256;
    await rm(socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
    // The sandbox runs as its own unprivileged uid; only it can reach this path (its folder is bound into it alone).
    await chmod(socketPath, 0o666);
    let closed: Promise<void> | undefined;
    return {
      socketPath,
      close: () => {
        closed ??= new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          server.close(() => resolve());
        }).then(() => rm(socketPath, { force: true }));
        return closed;
      },
    };
  }

  /** Checks host and port against the policy and returns the address to dial, or why not. */
  private async decide(policy: EgressPolicy, host: string, port: number): Promise<{ address: string } | { deny: string }> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) return { deny: 'bad port' };
    if (!policy.hostAllowed(host)) return { deny: `${host} is not on this sandbox's allowlist` };
    const bare = host.replace(/^\[(.*)\]$/, '$1');
    let addresses: string[];
    try {
      addresses = net.isIP(bare) ? [bare] : await this.resolve(bare);
    } catch {
      return { deny: `${host} does not resolve` };
    }
    // Every address must pass: a name that also points inside the network is refused as a whole.
    if (addresses.length === 0 || !addresses.every((a) => policy.addressAllowed(a))) {
      return { deny: `${host} resolves to a blocked address (loopback, private, link-local or metadata)` };
    }
    return { address: addresses[0]! };
  }

  private async tunnel(policy: EgressPolicy, log: Logger, req: http.IncomingMessage, client: Duplex, head: Buffer, track: (s: Duplex) => void): Promise<void> {
    const target = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(req.url ?? '');
    if (!target) {
      client.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const host = target[1]!;
    const port = Number(target[2]);
    const verdict = await this.decide(policy, host, port);
    if ('deny' in verdict) {
      log.info({ host, port, reason: verdict.deny }, 'egress denied');
      const body = `egress denied: ${verdict.deny}\n`;
      client.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      return;
    }
    const upstream = net.connect({ host: verdict.address, port, timeout: this.options.connectTimeoutMs ?? 10_000 });
    track(upstream);
    upstream.once('timeout', () => upstream.destroy(new Error('connect timeout')));
    upstream.once('connect', () => {
      upstream.setTimeout(0);
      log.debug({ host, port }, 'egress tunnel open');
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.once('error', () => {
      if (!client.destroyed) client.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n');
    });
    client.once('error', () => upstream.destroy());
    client.once('close', () => upstream.destroy());
  }

  private async forwardHttp(policy: EgressPolicy, log: Logger, req: http.IncomingMessage, res: http.ServerResponse, track: (s: Duplex) => void): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '');
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('egress proxy: use an absolute http:// URL or CONNECT\n');
      return;
    }
    if (url.protocol !== 'http:') {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('egress proxy: only http:// is forwarded; use CONNECT for anything else\n');
      return;
    }
    const port = Number(url.port || 80);
    const verdict = await this.decide(policy, url.hostname, port);
    if ('deny' in verdict) {
      log.info({ host: url.hostname, port, reason: verdict.deny }, 'egress denied');
      res.writeHead(403, { 'content-type': 'text/plain' }).end(`egress denied: ${verdict.deny}\n`);
      return;
    }
    const headers = { ...req.headers };
    delete headers['proxy-connection'];
    delete headers['proxy-authorization'];
    delete headers['connection'];
    delete headers['keep-alive'];
    // The Host the upstream sees is the one that was checked: a sandbox's own Host header would pick
    // another site on a shared front (CDN, virtual hosts) that is not on its allowlist.
    headers.host = url.host;
    // agent false: no upstream connection is pooled, so none is shared with another sandbox's requests
    // (the default agent keeps connections alive per address) or outlives this sandbox's listener.
    const upstream = http.request(
      { host: verdict.address, port, method: req.method, path: `${url.pathname}${url.search}`, headers, setHost: false, agent: false, timeout: this.options.connectTimeoutMs ?? 10_000 },
      (up) => {
        // Hop-by-hop: the upstream connection is this request's alone; the sandbox's connection keeps its own terms.
        const { connection: _c, 'keep-alive': _k, ...upHeaders } = up.headers;
        res.writeHead(up.statusCode ?? 502, upHeaders);
        up.pipe(res);
      },
    );
    upstream.on('socket', track);
    upstream.once('timeout', () => upstream.destroy(new Error('timeout')));
    upstream.once('error', () => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' }).end('egress proxy: upstream unreachable\n');
      else res.destroy();
    });
    req.pipe(upstream);
  }
}

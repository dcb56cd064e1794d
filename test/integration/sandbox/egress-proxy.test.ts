import dgram from 'node:dgram';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EgressProxy, type EgressListener } from '../../../src/sandbox/egress/egress-proxy.js';
import { tempDir } from './helpers.js';

// The egress proxy's own decisions, on a real proxy and a real origin on
// loopback (the sandbox adds nothing to these: it only pipes bytes to the
// proxy's unix socket). Test names resolve through the proxy's resolver hook;
// only 127.0.0.1 is ever dialled (local policy exempts it, standing in for a
// public address), every other address must be refused before any dial.
describe('egress proxy decisions', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let origin: http.Server;
  let port: number;
  const seen: Array<{ host: string | undefined; remotePort: number | undefined }> = [];
  const lookups: string[] = [];
  const answers: Record<string, string[][]> = {
    'public.test': [['127.0.0.1']],
    // Rebinding: the second answer would be loopback-but-not-exempt; it must never be asked for.
    'rebind.test': [['127.0.0.1'], ['127.0.0.2']],
    'mixed.test': [['127.0.0.1', '10.0.0.1']],
    'mixed6.test': [['127.0.0.1', '::1']],
    'mapped.test': [['::ffff:10.0.0.1']],
    'metadata.test': [['169.254.169.254']],
    'zero.test': [['0.0.0.0']],
    'private.test': [['192.168.1.1']],
    'compat.test': [['::127.0.0.1']],
    'empty.test': [[]],
  };
  let proxy: EgressProxy;
  const listeners: EgressListener[] = [];
  let sockA: string;
  let sockB: string;

  beforeAll(async () => {
    work = await tempDir('sr-egress-px-');
    origin = http.createServer((req, res) => {
      seen.push({ host: req.headers.host, remotePort: req.socket.remotePort });
      res.end(`origin ${req.url}\n`);
    });
    // The origin keeps connections alive, as most servers do.
    origin.keepAliveTimeout = 30_000;
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    port = (origin.address() as AddressInfo).port;
    proxy = new EgressProxy({
      exemptCidrs: ['127.0.0.1/32'],
      maxConnectionsPerSandbox: 4,
      resolve: async (host) => {
        lookups.push(host);
        const queue = answers[host];
        if (!queue) throw new Error('NXDOMAIN');
        return queue.length > 1 ? queue.shift()! : queue[0]!;
      },
    });
    const allow = [...Object.keys(answers), 'allowed.example'];
    sockA = path.join(work.dir, 'a.sock');
    sockB = path.join(work.dir, 'b.sock');
    listeners.push(await proxy.open(sockA, { allow, sandboxId: 'a' }), await proxy.open(sockB, { allow, sandboxId: 'b' }));
  });

  afterAll(async () => {
    for (const l of listeners) await l.close();
    origin?.close();
    await work?.remove();
  });

  /** Writes raw bytes to a listener and returns all it answers until it closes the connection. */
  const raw = (socketPath: string, text: string): Promise<string> =>
    new Promise((resolve) => {
      const c = net.connect(socketPath);
      const chunks: Buffer[] = [];
      c.on('data', (d) => chunks.push(d));
      // EPIPE or ECONNRESET: the listener closed before reading, as it does over the cap.
      c.on('error', () => undefined);
      c.on('close', () => resolve(Buffer.concat(chunks).toString()));
      c.write(text);
    });

  /** A CONNECT, then (if open) one GET through the tunnel; the answer up to the origin's reply. */
  const tunnelGet = (socketPath: string, target: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const c = net.connect(socketPath);
      let got = '';
      c.on('data', (d) => {
        got += d.toString();
        if (got.startsWith('HTTP/1.1 200') && !got.includes('origin ')) {
          if (!got.includes('GET-SENT')) {
            got += 'GET-SENT';
            c.write('GET /via-tunnel HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
          }
        }
      });
      c.on('error', reject);
      c.on('close', () => resolve(got));
      c.write(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n\r\n`);
    });

  /** A plain-HTTP request through a listener, as a proxy client sends it. */
  const viaProxy = (socketPath: string, url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const req = http.request({ socketPath, path: url, headers, agent: false }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, body });
        });
      });
      req.on('error', reject);
      req.end();
    });

  it('refuses a name if any of its addresses is blocked, whatever the spelling of the address', async () => {
    for (const name of ['mixed.test', 'mixed6.test', 'mapped.test', 'metadata.test', 'zero.test', 'private.test', 'compat.test', 'empty.test']) {
      const out = await tunnelGet(sockA, `${name}:${port}`);
      expect(out, name).toMatch(/^HTTP\/1.1 403/);
      expect(out, name).not.toContain('origin ');
      expect((await viaProxy(sockA, `http://${name}:${port}/`)).status, name).toBe(403);
    }
    expect(seen).toEqual([]);
  });

  it('dials the address it checked: a name is resolved once per request, so a rebinding answer never reaches the dial', async () => {
    const before = lookups.length;
    const out = await tunnelGet(sockA, `rebind.test:${port}`);
    expect(out).toContain('origin /via-tunnel');
    expect(lookups.slice(before)).toEqual(['rebind.test']);
    // The next request does resolve again, gets the blocked answer, and is refused.
    expect(await tunnelGet(sockA, `rebind.test:${port}`)).toMatch(/^HTTP\/1.1 403/);
  });

  it('refuses IP literals, other spellings of them and look-alike names that are not on the allowlist', async () => {
    const n = seen.length;
    const targets = ['127.0.0.1', '2130706433', '0177.0.0.1', '0x7f.1', '127.1', '[::1]', '[::ffff:127.0.0.1]', '[fe80::1%25lo]', 'allowed.example.evil.test', 'evilallowed.example', 'xallowed.example', 'allowed.example..'];
    for (const t of targets) {
      expect(await raw(sockA, `CONNECT ${t}:${port} HTTP/1.1\r\nhost: allowed.example\r\n\r\n`), t).toMatch(/^HTTP\/1.1 (403|400)/);
    }
    for (const u of [`http://2130706433:${port}/`, `http://0x7f.1:${port}/`, `http://127.1:${port}/`, `http://allowed.example@127.0.0.1:${port}/`, `http://[::ffff:7f00:1]:${port}/`]) {
      const r = await viaProxy(sockA, u, { host: 'allowed.example' });
      expect(r.status, u).toBe(403);
    }
    expect(seen.length).toBe(n);
  });

  it('forwards plain HTTP with the checked host as Host, not one the sandbox chose', async () => {
    const r = await viaProxy(sockA, `http://public.test:${port}/h`, { host: 'not-allowed.example' });
    expect(r).toEqual({ status: 200, body: 'origin /h\n' });
    expect(seen.at(-1)!.host).toBe(`public.test:${port}`);
  });

  it('judges every request on a kept-alive connection: a pipelined second request to a host off the allowlist is refused', async () => {
    const n = seen.length;
    const out = await raw(
      sockA,
      `GET http://public.test:${port}/first HTTP/1.1\r\nhost: public.test\r\n\r\n` +
        `GET http://127.0.0.2:${port}/second HTTP/1.1\r\nhost: public.test\r\nconnection: close\r\n\r\n`,
    );
    expect(out).toMatch(/^HTTP\/1.1 200[^]*origin \/first\n[^]*HTTP\/1.1 403[^]*127.0.0.2 is not on this sandbox's allowlist/);
    // A body framed two ways (the classic smuggling request) is dropped unanswered, not forwarded.
    const smuggle = await raw(
      sockA,
      `POST http://public.test:${port}/cl-te HTTP/1.1\r\nhost: public.test\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET http://127.0.0.2:${port}/ HTTP/1.1\r\n\r\n`,
    );
    expect(smuggle).toBe('');
    expect(seen.slice(n).map((s) => s.host)).toEqual([`public.test:${port}`]);
  });

  it('shares no upstream connection between two sandboxes', async () => {
    const n = seen.length;
    // A client that keeps its connection alive, as most do.
    expect((await viaProxy(sockA, `http://public.test:${port}/a`, { connection: 'keep-alive' })).status).toBe(200);
    expect((await viaProxy(sockB, `http://public.test:${port}/b`, { connection: 'keep-alive' })).status).toBe(200);
    const [a, b] = seen.slice(n);
    expect(a!.remotePort).not.toBe(b!.remotePort);
  });

  it('caps the connections one sandbox holds, and the cap is per sandbox', async () => {
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < 4; i++) {
        const c = net.connect(sockA);
        await new Promise<void>((r, j) => c.once('connect', () => r()).once('error', j));
        held.push(c);
      }
      // Over the cap: closed unanswered (without a cap the proxy answers 403).
      expect(await raw(sockA, `CONNECT nowhere.test:${port} HTTP/1.1\r\n\r\n`)).toBe('');
      // Another sandbox's listener still serves.
      expect(await tunnelGet(sockB, `public.test:${port}`)).toContain('origin /via-tunnel');
    } finally {
      for (const c of held) c.destroy();
    }
    // Freed: served again once the held connections are gone.
    let answer = '';
    for (let i = 0; i < 200 && answer === ''; i++) answer = await raw(sockA, `CONNECT nowhere.test:${port} HTTP/1.1\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1.1 403/);
  });
});

// The proxy's own resolver (hosts file, then DNS through c-ares) against a DNS
// server on loopback that never answers.
describe('egress proxy name resolution', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let hole: dgram.Socket;
  let origin: net.Server;
  let queries = 0;
  const listeners: EgressListener[] = [];

  beforeAll(async () => {
    work = await tempDir('sr-egress-dns-');
    hole = dgram.createSocket('udp4');
    hole.on('message', () => queries++);
    await new Promise<void>((r) => hole.bind(0, '127.0.0.1', r));
    origin = net.createServer((c) => c.end('origin\n'));
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  });

  afterAll(async () => {
    for (const l of listeners) await l.close();
    hole?.close();
    origin?.close();
    await work?.remove();
  });

  it("one sandbox's lookups that never get an answer do not hold up another sandbox's", async () => {
    const proxy = new EgressProxy({ exemptCidrs: ['127.0.0.1/32'], dnsServers: [`127.0.0.1:${hole.address().port}`] });
    const sockA = path.join(work.dir, 'a.sock');
    const sockB = path.join(work.dir, 'b.sock');
    listeners.push(await proxy.open(sockA, { allow: ['*.blackhole.test'], sandboxId: 'a' }), await proxy.open(sockB, { allow: ['localhost'], sandboxId: 'b' }));
    const pending: net.Socket[] = [];
    let answeredA = 0;
    try {
      for (let i = 0; i < 16; i++) {
        const c = net.connect(sockA);
        c.on('error', () => undefined);
        c.once('data', () => answeredA++);
        c.write(`CONNECT x${i}.blackhole.test:443 HTTP/1.1\r\n\r\n`);
        pending.push(c);
      }
      // Each of A's names has been asked (A and AAAA) and none answered.
      for (let i = 0; i < 500 && queries < 32; i++) await new Promise((r) => setTimeout(r, 10));
      expect(queries).toBeGreaterThanOrEqual(32);
      // B's name comes from the hosts file (localhost); with getaddrinfo it queued behind A's lookups (40 s for 8).
      const got = await new Promise<string>((resolve) => {
        const c = net.connect(sockB);
        let s = '';
        c.on('data', (d) => {
          s += d.toString();
          if (s.includes('origin\n')) c.destroy();
        });
        c.on('close', () => resolve(s));
        c.write(`CONNECT localhost:${(origin.address() as AddressInfo).port} HTTP/1.1\r\n\r\n`);
      });
      expect(got).toMatch(/^HTTP\/1.1 200[^]*origin\n$/);
      expect(answeredA).toBe(0);
    } finally {
      for (const c of pending) c.destroy();
    }
  });
});

import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BwrapDriver } from '../../../src/sandbox/bwrap/bwrap-driver.js';
import type { Sandbox } from '../../../src/sandbox/driver.js';
import { EgressProxy } from '../../../src/sandbox/egress/egress-proxy.js';
import { DockerDriver } from '../../../src/sandbox/docker/docker-driver.js';
import { IMAGES_DIR, sandboxId, spec, tempDir } from './helpers.js';

// Network egress (issue 3 point 3) through the runner's proxy, on loopback only:
// the "internet" is an HTTP server on the host's 127.0.0.1, which local policy
// must exempt explicitly for the sandbox to reach it.
describe('egress proxy with a bwrap sandbox', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let origin: http.Server;
  let port: number;
  let open: BwrapDriver;
  let strict: BwrapDriver;
  let sbOpen: Sandbox;
  let sbStrict: Sandbox;

  beforeAll(async () => {
    work = await tempDir('sr-egress-');
    origin = http.createServer((req, res) => res.end(req.url === '/host' ? `host ${req.headers.host}\n` : `hello from origin ${req.method} ${req.url}\n`));
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    port = (origin.address() as AddressInfo).port;
    const cg = `sandbox-runner-test-${process.pid}-e`;
    open = new BwrapDriver({ imagesDir: IMAGES_DIR, workRoot: path.join(work.dir, 'a'), cgroupParent: cg, egress: new EgressProxy({ exemptCidrs: ['127.0.0.1/32'] }) });
    strict = new BwrapDriver({ imagesDir: IMAGES_DIR, workRoot: path.join(work.dir, 'b'), cgroupParent: cg, egress: new EgressProxy() });
    const network = { mode: 'proxy' as const, proxyUrl: 'http://127.0.0.1:3128', allow: ['localhost', '169.254.169.254'] };
    sbOpen = await open.create(spec(sandboxId('eg'), { network }));
    sbStrict = await strict.create(spec(sandboxId('eg'), { network }));
  });

  afterAll(async () => {
    await sbOpen?.dispose();
    await sbStrict?.dispose();
    await open?.cleanupOrphans({ parentToo: true });
    origin?.close();
    await work?.remove();
  });

  const curl = async (sb: Sandbox, ...args: string[]) => {
    const r = await sb.run({ argv: ['curl', '-sS', '--max-time', '10', ...args] });
    return r.stdout.toString() + r.stderr.toString();
  };

  it('reaches an allowed host through the proxy, as plain HTTP and through CONNECT', async () => {
    expect(await curl(sbOpen, `http://localhost:${port}/plain`)).toBe('hello from origin GET /plain\n');
    expect(await curl(sbOpen, '--proxytunnel', `http://localhost:${port}/tunnel`)).toBe('hello from origin GET /tunnel\n');
  });

  it('refuses a host that is not on the allowlist', async () => {
    const out = await curl(sbOpen, '--proxytunnel', `http://127.0.0.2:${port}/`);
    expect(out).toMatch(/403|CONNECT tunnel failed/);
    const plain = await curl(sbOpen, `http://127.0.0.2:${port}/`);
    expect(plain).toContain("127.0.0.2 is not on this sandbox's allowlist");
  });

  it('blocks loopback and the metadata address unless local policy exempts them, even when allowlisted', async () => {
    expect(await curl(sbStrict, `http://localhost:${port}/`)).toContain('resolves to a blocked address');
    expect(await curl(sbStrict, 'http://169.254.169.254/latest/meta-data/')).toContain('resolves to a blocked address');
    expect(await curl(sbOpen, 'http://169.254.169.254/latest/meta-data/')).toContain('resolves to a blocked address');
  });

  it('sends the allowed host as Host upstream, not another one the sandbox names (a shared front would serve that site)', async () => {
    expect(await curl(sbOpen, '-H', 'Host: not-allowed.example', `http://localhost:${port}/host`)).toBe(`host localhost:${port}\n`);
  });

  it('has no way out but the proxy', async () => {
    const out = await curl(sbOpen, '--noproxy', '*', `http://localhost:${port}/`);
    expect(out).not.toContain('hello from origin');
    expect(out).toMatch(/Failed to connect|Couldn't connect/);
  });

  it("reaches neither another sandbox's proxy socket nor the host's abstract unix sockets", async () => {
    // The other sandbox's listener, by its host path: not in this sandbox's mount namespace.
    const strictDir = path.join(work.dir, 'b');
    const find = await sbOpen.run({ argv: ['sh', '-c', `ls -A /run/sandbox-egress; test -e ${strictDir} && echo VISIBLE || echo absent`] });
    expect(find.stdout.toString()).toBe('fwd.py\nproxy.sock\nabsent\n');
    // An abstract socket on the host (as some host services use) belongs to the host's network namespace.
    // Node pads the name with NULs to the whole sun_path; the probe does the same (it connects on the host).
    const name = `sr-egress-probe-${process.pid}`;
    const probe = net.createServer((c) => c.end('host service\n'));
    await new Promise<void>((r) => probe.listen(`\0${name}`, r));
    try {
      const py = 'import socket, sys\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect(("\\0" + sys.argv[1]).ljust(108, "\\0"))\n    print("CONNECTED", s.recv(100))\nexcept OSError as e:\n    print("refused", e.errno)\n';
      const r = await sbOpen.run({ argv: ['python3', '-c', py, name] });
      expect(r.stdout.toString()).toMatch(/^refused \d+\n$/);
    } finally {
      probe.close();
    }
  });
});

describe('egress proxy with a docker sandbox', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let origin: http.Server;
  let port: number;
  let driver: DockerDriver;
  let sb: Sandbox;

  beforeAll(async () => {
    work = await tempDir('sr-egress-dk-');
    origin = http.createServer((req, res) => res.end(`hello from origin ${req.url}\n`));
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    port = (origin.address() as AddressInfo).port;
    driver = new DockerDriver({ workRoot: path.join(work.dir, 'd'), owner: `test-${process.pid}-e`, egress: new EgressProxy({ exemptCidrs: ['127.0.0.1/32'] }) });
    sb = await driver.create(spec(sandboxId('egd'), { network: { mode: 'proxy', proxyUrl: 'http://127.0.0.1:3128', allow: ['localhost'] } }));
  });

  afterAll(async () => {
    await sb?.dispose();
    await driver?.cleanupOrphans();
    origin?.close();
    await work?.remove();
  });

  it('reaches an allowed host only through the proxy, and nothing else', async () => {
    const run = async (...args: string[]) => {
      const r = await sb.run({ argv: ['curl', '-sS', '--max-time', '10', ...args] });
      return r.stdout.toString() + r.stderr.toString();
    };
    expect(await run('--proxytunnel', `http://localhost:${port}/x`)).toBe('hello from origin /x\n');
    expect(await run(`http://127.0.0.2:${port}/`)).toContain('not on this sandbox');
    expect(await run('--noproxy', '*', `http://localhost:${port}/`)).toMatch(/Failed to connect|Couldn't connect/);
  });
});

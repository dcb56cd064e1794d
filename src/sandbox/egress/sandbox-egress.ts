import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { RunnerError } from '../../util/errors.js';
import type { NetworkSpec } from '../driver.js';
import type { EgressListener, EgressProxy } from './egress-proxy.js';
import { FORWARDER_PY } from './forwarder.js';

/** Where the egress folder (socket + forwarder) appears inside a sandbox. */
export const EGRESS_DIR_INSIDE = '/run/sandbox-egress';

/** A sandbox's way out: its proxy listener and how processes inside reach it. */
export interface SandboxEgress {
  /** Host folder to bind at EGRESS_DIR_INSIDE. */
  hostDir: string;
  listener: EgressListener;
  /** Port of the forwarder on the sandbox's own 127.0.0.1. */
  port: number;
  /** Proxy variables added to the sandbox environment. */
  env: Record<string, string>;
  /** Prefix of a command so that the forwarder runs in its network namespace first. */
  wrap(argv: string[]): string[];
}

/**
 * Sets up proxy-mode networking for a sandbox: a listener of the runner's
 * egress proxy on a unix socket in `sandboxDir/egress`, and the forwarder
 * script beside it. Returns undefined for `mode: none`.
 * @throws RunnerError `invalid_input` for a bad proxyUrl, `driver_unavailable` without a proxy.
 */
export async function setupSandboxEgress(network: NetworkSpec, sandboxId: string, sandboxDir: string, proxy: EgressProxy | undefined): Promise<SandboxEgress | undefined> {
  if (network.mode !== 'proxy') return undefined;
  if (!proxy) {
    throw new RunnerError('driver_unavailable', 'network mode proxy needs the egress proxy, which this runner was not given; enable egress in the runner config or use network mode none');
  }
  const m = /^(?:https?:\/\/)?127\.0\.0\.1:(\d{1,5})\/?$/.exec(network.proxyUrl);
  const port = m ? Number(m[1]) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new RunnerError('invalid_input', `network.proxyUrl ${JSON.stringify(network.proxyUrl)} must be http://127.0.0.1:PORT (the sandbox's own loopback)`);
  }
  const hostDir = path.join(sandboxDir, 'egress');
  const socketPath = path.join(hostDir, 'proxy.sock');
  // sun_path holds 108 bytes.
  if (Buffer.byteLength(socketPath) > 100) {
    throw new RunnerError('config_invalid', `egress socket path ${socketPath} is too long for a unix socket; choose a shorter sandbox work root`);
  }
  await mkdir(hostDir, { recursive: true, mode: 0o755 });
  await writeFile(path.join(hostDir, 'fwd.py'), FORWARDER_PY, { mode: 0o644 });
  const listener = await proxy.open(socketPath, { allow: network.allow ?? [], sandboxId });
  const url = `http://127.0.0.1:${port}`;
  return {
    hostDir,
    listener,
    port,
    env: { http_proxy: url, https_proxy: url, HTTP_PROXY: url, HTTPS_PROXY: url, no_proxy: '', NO_PROXY: '' },
    wrap: (argv) => ['python3', `${EGRESS_DIR_INSIDE}/fwd.py`, String(port), `${EGRESS_DIR_INSIDE}/proxy.sock`, '--', ...argv],
  };
}

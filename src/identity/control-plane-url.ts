import { isIP } from 'node:net';
import { RunnerError } from '../util/errors.js';

/** True for 127.0.0.0/8, ::1 and `localhost`. */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

/**
 * Checks a control-plane URL: https (wss) anywhere, plain http (ws) only to a
 * loopback address, where no network sits between the two ends.
 */
export function checkControlPlaneUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new RunnerError('usage', `--url ${JSON.stringify(raw)} is not a URL; give one like https://cp.example.com`);
  }
  const secure = url.protocol === 'https:' || url.protocol === 'wss:';
  const plain = url.protocol === 'http:' || url.protocol === 'ws:';
  if (!secure && !plain) throw new RunnerError('usage', `--url must start with https:// (or http:// on loopback), not ${url.protocol}`);
  if (plain && !isLoopbackHost(url.hostname)) {
    throw new RunnerError(
      'usage',
      `--url ${url.origin} is not encrypted; use https:// (plain http:// is allowed only to 127.0.0.1, ::1 or localhost)`,
    );
  }
  return url;
}

/** The WebSocket endpoint of a control plane: http→ws, https→wss, path /v1/connect. */
export function websocketUrl(base: string): string {
  const url = checkControlPlaneUrl(base);
  const proto = url.protocol === 'https:' || url.protocol === 'wss:' ? 'wss:' : 'ws:';
  return `${proto}//${url.host}/v1/connect`;
}

/** The HTTP base of a control plane. */
export function httpBase(base: string): string {
  const url = checkControlPlaneUrl(base);
  const proto = url.protocol === 'https:' || url.protocol === 'wss:' ? 'https:' : 'http:';
  return `${proto}//${url.host}`;
}

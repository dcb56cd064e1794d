import { Resolver } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';

/** How the egress proxy resolves names. */
export interface EgressResolverOptions {
  /** DNS servers to ask (`ip` or `ip:port`) instead of those in /etc/resolv.conf. */
  servers?: string[];
  /** Hosts file read before DNS. Default /etc/hosts. */
  hostsFile?: string;
  /** Per-query timeout, ms, and tries per server. Default 2500 ms, 2 tries. */
  timeoutMs?: number;
  tries?: number;
}

/**
 * Resolves a name to all its addresses: the hosts file first, then DNS (A and
 * AAAA) through c-ares, never getaddrinfo. getaddrinfo runs on libuv's thread
 * pool, of which only two threads take such slow work: a sandbox asking for
 * names whose DNS never answers (any name under a wildcard it is allowed)
 * kept both busy, and every other sandbox's lookups queued behind its whole
 * backlog (8 such requests held another sandbox's CONNECT for 40 s). c-ares
 * queries run on the event loop, each with its own timeout. Names are asked
 * as written, with no resolv.conf search domain appended.
 */
export function createEgressResolver(options: EgressResolverOptions = {}): (host: string) => Promise<string[]> {
  const resolver = new Resolver({ timeout: options.timeoutMs ?? 2500, tries: options.tries ?? 2 });
  if (options.servers) resolver.setServers(options.servers);
  const hostsFile = options.hostsFile ?? '/etc/hosts';
  return async (host) => {
    const name = host.toLowerCase().replace(/\.$/, '');
    const fromHosts = hostsEntries(await readFile(hostsFile, 'utf8').catch(() => ''), name);
    if (fromHosts.length > 0) return fromHosts;
    const [v4, v6] = await Promise.allSettled([resolver.resolve4(name), resolver.resolve6(name)]);
    const addresses = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
    if (addresses.length === 0) throw new Error(`${name} does not resolve`);
    return addresses;
  };
}

/** Addresses a hosts file gives `name` (lines `address name alias...`, `#` comments). */
function hostsEntries(text: string, name: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const [address, ...names] = line.replace(/#.*/, '').trim().split(/\s+/);
    if (address && isIP(address) && names.some((n) => n.toLowerCase() === name)) out.push(address);
  }
  return out;
}

import { BlockList, isIP } from 'node:net';

/** What kind of destination a host or address is; only `public` is covered by "*". */
export type DestinationKind = 'public' | 'private' | 'loopback' | 'metadata';

/**
 * Classifies a requested destination by its name or literal address. Names
 * are classified as written: a public name that resolves to a private address
 * is the sandbox network layer's to stop at connect time (see docs/security.md).
 */
export function classifyDestination(host: string): DestinationKind {
  const name = host.toLowerCase().replace(/\.$/, '');
  const address = stripBrackets(name);
  const family = isIP(address);
  if (family !== 0) {
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (METADATA.check(address, type)) return 'metadata';
    if (LOOPBACK.check(address, type)) return 'loopback';
    if (PRIVATE.check(address, type)) return 'private';
    return 'public';
  }
  const cidr = parseCidr(name);
  if (cidr) {
    // A range is as special as its first address (ranges that straddle are rare and caught by the layer below).
    return classifyDestination(cidr.address);
  }
  if (name === 'localhost' || name.endsWith('.localhost')) return 'loopback';
  if (METADATA_NAMES.has(name)) return 'metadata';
  if (/\.(internal|local|lan|home\.arpa)$/.test(name)) return 'private';
  return 'public';
}

/**
 * Whether the policy allowlist entry `rule` covers the requested `entry`.
 * Rules: `*` (any host or address), `*.example.com` (any subdomain, not the
 * apex), an exact host, an IP address, or a CIDR range. A requested wildcard
 * is covered only by an equal or wider wildcard.
 */
export function allowlistCovers(rule: string, entry: string): boolean {
  const r = rule.toLowerCase().replace(/\.$/, '');
  const e = entry.toLowerCase().replace(/\.$/, '');
  if (r === '*') return true;
  if (e === '*') return false;
  const range = parseCidr(r);
  if (range) {
    const list = new BlockList();
    list.addSubnet(range.address, range.prefix, range.type);
    const literal = stripBrackets(e);
    if (isIP(literal)) return list.check(literal, isIP(literal) === 4 ? 'ipv4' : 'ipv6');
    const sub = parseCidr(e);
    return sub !== undefined && sub.type === range.type && sub.prefix >= range.prefix && list.check(sub.address, sub.type);
  }
  if (r.startsWith('*.')) {
    const suffix = r.slice(1);
    if (e.startsWith('*.')) return e.slice(1) === suffix || e.slice(1).endsWith(suffix);
    return e.endsWith(suffix) && e.length > suffix.length;
  }
  return stripBrackets(r) === stripBrackets(e);
}

function stripBrackets(s: string): string {
  return s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s;
}

function parseCidr(s: string): { address: string; prefix: number; type: 'ipv4' | 'ipv6' } | undefined {
  const slash = s.lastIndexOf('/');
  if (slash < 0) return undefined;
  const address = s.slice(0, slash);
  const prefix = Number(s.slice(slash + 1));
  const family = isIP(address);
  if (family === 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) return undefined;
  return { address, prefix, type: family === 4 ? 'ipv4' : 'ipv6' };
}

function blockList(ranges: Array<[string, number, 'ipv4' | 'ipv6']>): BlockList {
  const list = new BlockList();
  for (const [address, prefix, type] of ranges) list.addSubnet(address, prefix, type);
  return list;
}

// Immutable lookup tables, not state: built once, never written.
const LOOPBACK = blockList([
  ['127.0.0.0', 8, 'ipv4'],
  ['0.0.0.0', 8, 'ipv4'],
  ['::1', 128, 'ipv6'],
  ['::', 128, 'ipv6'],
]);
const METADATA = blockList([
  ['169.254.0.0', 16, 'ipv4'],
  ['100.100.100.200', 32, 'ipv4'],
  ['fd00:ec2::254', 128, 'ipv6'],
  ['fe80::', 10, 'ipv6'],
]);
const PRIVATE = blockList([
  ['10.0.0.0', 8, 'ipv4'],
  ['172.16.0.0', 12, 'ipv4'],
  ['192.168.0.0', 16, 'ipv4'],
  ['100.64.0.0', 10, 'ipv4'],
  ['fc00::', 7, 'ipv6'],
]);
const METADATA_NAMES = new Set(['metadata.google.internal', 'metadata', 'instance-data', 'instance-data.ec2.internal']);

import { BlockList, isIP } from 'node:net';

/**
 * Who a sandbox may reach through the egress proxy: hosts on its allowlist,
 * and never the addresses that belong to the host's own network (cloud
 * metadata, loopback, private and link-local ranges) unless local policy
 * exempts them.
 */
export interface EgressPolicyOptions {
  /** Host names the sandbox may reach: `example.com` exactly, `*.example.com` for its subdomains. */
  allow: string[];
  /** CIDRs exempt from the block list by local policy, e.g. `10.1.2.0/24` for an internal mirror. */
  exemptCidrs?: string[];
  /** Cloud metadata addresses may be dialled (local policy `allowMetadata`); no CIDR exempts them. */
  allowMetadata?: boolean;
}

/** Always blocked unless exempted: link-local (169.254.169.254, the cloud metadata service), loopback, private, CGNAT, unspecified, multicast. */
const BLOCKED_V4 = ['0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.0.0.0/24', '192.168.0.0/16', '198.18.0.0/15', '224.0.0.0/4', '240.0.0.0/4'];
// ::/96 (IPv4-compatible, deprecated; holds :: and ::1), ::ffff:0:0:0/96 (SIIT) and 64:ff9b:1::/48 (local-use
// NAT64) embed an IPv4 address that a translator on the host's network may deliver to, whatever its range.
const BLOCKED_V6 = ['::/96', 'fc00::/7', 'fe80::/10', 'ff00::/8', '64:ff9b::/96', '64:ff9b:1::/48', '::ffff:0:0:0/96'];

/**
 * Cloud metadata services, as local policy classifies them (src/policy/network-rules.ts): some sit
 * inside ranges that `allowPrivate` exempts (Alibaba's in 100.64.0.0/10, AWS's IPv6 one in
 * fc00::/7), so they are judged before and apart from the exemptions.
 */
const METADATA = ['169.254.0.0/16', '100.100.100.200/32', 'fd00:ec2::254/128', 'fe80::/10'];

function cidrList(cidrs: string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [net, bits] = cidr.split('/');
    const type = isIP(net ?? '') === 6 ? 'ipv6' : 'ipv4';
    list.addSubnet(net!, Number(bits ?? (type === 'ipv6' ? 128 : 32)), type);
  }
  return list;
}

export class EgressPolicy {
  private readonly allow: string[];
  private readonly blocked = cidrList([...BLOCKED_V4, ...BLOCKED_V6]);
  private readonly metadata = cidrList(METADATA);
  private readonly exempt: BlockList;
  private readonly allowMetadata: boolean;

  constructor(options: EgressPolicyOptions) {
    this.allow = options.allow.map((h) => h.trim().toLowerCase().replace(/\.$/, '')).filter(Boolean);
    this.exempt = cidrList(options.exemptCidrs ?? []);
    this.allowMetadata = options.allowMetadata ?? false;
  }

  /** Whether the host name (or IP literal) is on the allowlist. */
  hostAllowed(host: string): boolean {
    const h = host.toLowerCase().replace(/\.$/, '').replace(/^\[(.*)\]$/, '$1');
    return this.allow.some((a) => (a.startsWith('*.') ? h.endsWith(a.slice(1)) && h.length > a.length - 1 : h === a));
  }

  /** Whether a resolved address may be dialled. IPv4-mapped IPv6 is judged as IPv4. */
  addressAllowed(address: string): boolean {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    const ip = mapped ? mapped[1]! : address;
    const type = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (isIP(ip) === 0) return false;
    if (this.metadata.check(ip, type)) return this.allowMetadata;
    if (this.exempt.check(ip, type)) return true;
    return !this.blocked.check(ip, type);
  }
}

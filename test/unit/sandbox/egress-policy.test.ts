import { describe, expect, it } from 'vitest';
import { EgressPolicy } from '../../../src/sandbox/egress/egress-policy.js';

describe('EgressPolicy', () => {
  const p = new EgressPolicy({ allow: ['example.com', '*.pypi.org'] });

  it('allows listed hosts and subdomains of a wildcard only', () => {
    expect(p.hostAllowed('example.com')).toBe(true);
    expect(p.hostAllowed('EXAMPLE.com.')).toBe(true);
    expect(p.hostAllowed('sub.example.com')).toBe(false);
    expect(p.hostAllowed('files.pypi.org')).toBe(true);
    expect(p.hostAllowed('pypi.org')).toBe(false);
    expect(p.hostAllowed('evilpypi.org')).toBe(false);
    expect(p.hostAllowed('a.b.pypi.org')).toBe(true);
    expect(p.hostAllowed('files.pypi.org.evil.test')).toBe(false);
    expect(p.hostAllowed('example.com.evil.test')).toBe(false);
  });

  it('blocks metadata, loopback, private and link-local addresses, also IPv4-mapped', () => {
    for (const a of ['169.254.169.254', '127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '100.64.0.1', '0.0.0.0', '::1', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:169.254.169.254', '::', '::127.0.0.1', '::7f00:1', '::ffff:0:7f00:1', '64:ff9b::a9fe:a9fe', '64:ff9b:1::7f00:1', '::FFFF:127.0.0.1', '0:0:0:0:0:ffff:7f00:1', 'fe80::1%lo']) {
      expect(p.addressAllowed(a), a).toBe(false);
    }
    for (const a of ['93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946']) expect(p.addressAllowed(a), a).toBe(true);
  });

  it('keeps cloud metadata addresses blocked when local policy exempts the private ranges that hold them, and lets allowMetadata alone open them', () => {
    const privateOk = new EgressPolicy({ allow: [], exemptCidrs: ['10.0.0.0/8', '100.64.0.0/10', 'fc00::/7', '169.254.0.0/16'] });
    for (const a of ['100.100.100.200', 'fd00:ec2::254', '169.254.169.254', '::ffff:100.100.100.200']) expect(privateOk.addressAllowed(a), a).toBe(false);
    for (const a of ['10.1.2.3', '100.64.0.1', 'fd12::1']) expect(privateOk.addressAllowed(a), a).toBe(true);
    const metadataOk = new EgressPolicy({ allow: [], allowMetadata: true });
    for (const a of ['100.100.100.200', 'fd00:ec2::254', '169.254.169.254']) expect(metadataOk.addressAllowed(a), a).toBe(true);
    expect(metadataOk.addressAllowed('10.1.2.3')).toBe(false);
  });

  it('lets local policy exempt a range', () => {
    const q = new EgressPolicy({ allow: [], exemptCidrs: ['10.1.2.0/24'] });
    expect(q.addressAllowed('10.1.2.9')).toBe(true);
    expect(q.addressAllowed('10.1.3.9')).toBe(false);
  });
});

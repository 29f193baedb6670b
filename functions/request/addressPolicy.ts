import { isIP } from 'node:net';

/**
 * Which special-purpose range an IP address falls in, or 'public'. Only 'public'
 * addresses may be fetched on a caller's behalf: everything else reaches this
 * machine, its network, the cloud metadata server, or nothing routable.
 */
export type AddressRange =
  | 'public'
  | 'unspecified'
  | 'this network'
  | 'loopback'
  | 'private'
  | 'carrier-grade NAT'
  | 'link-local'
  | 'documentation'
  | 'benchmarking'
  | 'multicast'
  | 'broadcast'
  | 'reserved'
  | 'unique-local'
  | 'site-local'
  | 'IPv4-compatible'
  | 'local-use NAT64'
  | 'not an IP address';

interface Rule {
  network: bigint;
  prefixLength: number;
  /** A fixed answer, or where an IPv4 address hides inside an IPv6 one and decides the answer. */
  range: AddressRange | ((address: bigint) => AddressRange);
}

const IPV4_BITS = 32;
const IPV6_BITS = 128;
const LOW_32_BITS = 0xffff_ffffn;

function ipv4ToBigInt(address: string): bigint {
  return address.split('.').reduce((value, octet) => (value << 8n) | BigInt(Number(octet)), 0n);
}

/** Expects text that `isIP` has accepted as IPv6 (no zone). */
function ipv6ToBigInt(address: string): bigint {
  let text = address;
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const embedded = ipv4ToBigInt(tail);
    text = `${text.slice(0, lastColon + 1)}${(embedded >> 16n).toString(16)}:${(embedded & 0xffffn).toString(16)}`;
  }
  const [head = '', rest] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const zeroGroups: string[] = rest === undefined ? [] : new Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  return [...headGroups, ...zeroGroups, ...tailGroups].reduce((value, group) => (value << 16n) | BigInt(parseInt(group, 16)), 0n);
}

function rule(cidr: string, range: Rule['range']): Rule {
  const [network = '', prefixLength = ''] = cidr.split('/');
  return {
    network: isIP(network) === 4 ? ipv4ToBigInt(network) : ipv6ToBigInt(network),
    prefixLength: Number(prefixLength),
    range,
  };
}

/** First match wins, so narrower ranges come before the ranges that contain them. */
const IPV4_RULES: readonly Rule[] = [
  rule('0.0.0.0/32', 'unspecified'),
  rule('0.0.0.0/8', 'this network'),
  rule('10.0.0.0/8', 'private'),
  rule('100.64.0.0/10', 'carrier-grade NAT'),
  rule('127.0.0.0/8', 'loopback'),
  // Includes 169.254.169.254, the cloud metadata server.
  rule('169.254.0.0/16', 'link-local'),
  rule('172.16.0.0/12', 'private'),
  rule('192.0.0.0/24', 'reserved'),
  rule('192.0.2.0/24', 'documentation'),
  // The retired 6to4 relay anycast prefix.
  rule('192.88.99.0/24', 'reserved'),
  rule('192.168.0.0/16', 'private'),
  rule('198.18.0.0/15', 'benchmarking'),
  rule('198.51.100.0/24', 'documentation'),
  rule('203.0.113.0/24', 'documentation'),
  rule('224.0.0.0/4', 'multicast'),
  rule('255.255.255.255/32', 'broadcast'),
  rule('240.0.0.0/4', 'reserved'),
  rule('0.0.0.0/0', 'public'),
];

const embeddedIpv4 =
  (shift: bigint) =>
  (address: bigint): AddressRange =>
    firstMatch(IPV4_RULES, IPV4_BITS, (address >> shift) & LOW_32_BITS);

const IPV6_RULES: readonly Rule[] = [
  rule('::/128', 'unspecified'),
  rule('::1/128', 'loopback'),
  // IPv4-mapped: the socket layer connects to the embedded IPv4 address.
  rule('::ffff:0:0/96', embeddedIpv4(0n)),
  // Deprecated since RFC 4291 and never routed; nothing legitimate lives there.
  rule('::/96', 'IPv4-compatible'),
  // NAT64 gateways forward to the embedded IPv4 address.
  rule('64:ff9b::/96', embeddedIpv4(0n)),
  rule('64:ff9b:1::/48', 'local-use NAT64'),
  rule('100::/64', 'reserved'),
  // IETF protocol assignments: Teredo, benchmarking, ORCHID and the like.
  rule('2001::/23', 'reserved'),
  rule('2001:db8::/32', 'documentation'),
  // 6to4 routes to the IPv4 address in bits 16 to 48.
  rule('2002::/16', embeddedIpv4(80n)),
  rule('3fff::/20', 'documentation'),
  rule('2000::/3', 'public'),
  rule('fc00::/7', 'unique-local'),
  rule('fe80::/10', 'link-local'),
  rule('fec0::/10', 'site-local'),
  rule('ff00::/8', 'multicast'),
  // Outside global unicast nothing is allocated for public use.
  rule('::/0', 'reserved'),
];

function firstMatch(rules: readonly Rule[], bits: number, address: bigint): AddressRange {
  for (const { network, prefixLength, range } of rules) {
    const hostBits = BigInt(bits - prefixLength);
    if (address >> hostBits === network >> hostBits) return typeof range === 'function' ? range(address) : range;
  }
  // Unreachable: each table ends with a rule for the whole address space.
  return 'reserved';
}

export function classifyAddress(address: string): AddressRange {
  // dns.lookup may return link-local IPv6 answers with a zone (fe80::1%eth0); the zone does not change the range.
  const bare = address.split('%', 1)[0] ?? '';
  switch (isIP(bare)) {
    case 4:
      return firstMatch(IPV4_RULES, IPV4_BITS, ipv4ToBigInt(bare));
    case 6:
      return firstMatch(IPV6_RULES, IPV6_BITS, ipv6ToBigInt(bare));
    default:
      return 'not an IP address';
  }
}

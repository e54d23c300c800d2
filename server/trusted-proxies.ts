// Which peers may name the client in X-Forwarded-For (TRUSTED_PROXIES): addresses and CIDRs, IPv4
// and IPv6. An IPv4-mapped IPv6 form (::ffff:10.0.0.1, what a dual-stack socket reports for an
// IPv4 peer) is the IPv4 address it carries, in the list and in the peer alike.
// Matching runs per request behind a proxy, so IPv4 (the common case, mapped or not) is parsed by
// hand and compared against (network, mask) pairs: 60-80 ns a peer on the dev box, against 200 ns
// for node:net's BlockList, which handles IPv6 (450 ns).
import { BlockList, isIPv4, isIPv6 } from "node:net";
import { hextets } from "./client-ip.ts";

/** A dotted IPv4 address (from `from` on) as an unsigned 32-bit number, or -1 when it is not one. */
export function ipv4Number(s: string, from = 0): number {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = from; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    if (ch === 46 /* . */) {
      if (digits === 0 || dots === 3) return -1;
      n = n * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (ch >= 48 && ch <= 57) {
      if (digits > 0 && part === 0) return -1; // a leading zero (octal to some parsers)
      part = part * 10 + ch - 48;
      if (part > 255) return -1;
      digits++;
    } else return -1;
  }
  return dots === 3 && digits > 0 ? n * 256 + part : -1;
}

/** `ip` as an IPv4 number: dotted, or IPv4-mapped with a dotted tail (::ffff:a.b.c.d); else -1. */
function v4Of(ip: string): number {
  const n = ipv4Number(ip);
  if (n >= 0 || ip.length < 14 || ip.charCodeAt(0) !== 58 || ip.charCodeAt(1) !== 58) return n;
  return ip.slice(2, 7).toLowerCase() === "ffff:" ? ipv4Number(ip, 7) : -1;
}

const maskOf = (bits: number) => (bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0);

type Rule = { v4: number; bits: number } | { v6: string; bits: number };

/** One TRUSTED_PROXIES entry as a rule, or what is wrong with it (for the ConfigError). */
export function parseTrustedProxy(entry: string): Rule | string {
  const parts = entry.split("/");
  const [addr = "", prefix] = parts;
  if (parts.length > 2) return "is not an address or a CIDR (address/prefix-length)";
  if (addr.includes("%")) return "has a zone (%…): give the address without it";
  if (prefix !== undefined && !/^\d{1,3}$/.test(prefix)) return "has a prefix length that is not a number";
  let rule: Rule;
  if (isIPv4(addr)) {
    const bits = prefix === undefined ? 32 : Number(prefix);
    if (bits > 32) return "has a prefix length above 32 (IPv4)";
    rule = { v4: ipv4Number(addr), bits };
  } else if (isIPv6(addr)) {
    const g = hextets(addr).map((x) => Number.parseInt(x, 16));
    const bits = prefix === undefined ? 128 : Number(prefix);
    if (bits > 128) return "has a prefix length above 128 (IPv6)";
    const mapped = g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff;
    if (mapped && bits >= 96) {
      rule = { v4: (((g[6] ?? 0) << 16) | (g[7] ?? 0)) >>> 0, bits: bits - 96 };
    } else {
      const value = g.reduce((acc, x) => (acc << 16n) | BigInt(x), 0n);
      const host = (1n << BigInt(128 - bits)) - 1n;
      if ((value & host) !== 0n)
        return `has bits set past its prefix length: did you mean ${networkV6(value & ~host)}/${bits}?`;
      rule = { v6: addr, bits };
    }
  } else {
    return "is not an IP address or a CIDR (e.g. 10.0.0.7, 10.0.0.0/8, fd00::/8)";
  }
  if ("v4" in rule) {
    const net = (rule.v4 & maskOf(rule.bits)) >>> 0;
    if (net !== rule.v4) return `has bits set past its prefix length: did you mean ${dotted(net)}/${rule.bits}?`;
  }
  if (rule.bits === 0) return "trusts every address: any client could then write its own X-Forwarded-For";
  return rule;
}

const dotted = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
/** An IPv6 address from its 128 bits, in its shortest form (the URL parser's). */
const networkV6 = (value: bigint) =>
  new URL(
    `http://[${Array.from({ length: 8 }, (_, i) => ((value >> BigInt(16 * (7 - i))) & 0xffffn).toString(16)).join(":")}]/`,
  ).hostname.slice(1, -1);

/** The TRUSTED_PROXIES entries' problems, each naming its entry (empty when all are valid). */
export function trustedProxyProblems(entries: readonly string[]): string[] {
  const out: string[] = [];
  for (const e of entries) {
    const r = parseTrustedProxy(e);
    if (typeof r === "string") out.push(`${JSON.stringify(e)} ${r}`);
  }
  return out;
}

/** The set of trusted peers: `has(ip)` for a peer or an X-Forwarded-For hop. */
export class TrustedProxies {
  /** IPv4 rules as (network, mask) pairs. */
  private readonly v4: Uint32Array;
  /** Every rule (IPv4 ones too: an IPv6 form such as ::ffff:a00:1 is matched against them here). */
  private readonly all = new BlockList();
  readonly size: number;

  constructor(entries: readonly string[]) {
    const v4: number[] = [];
    for (const e of entries) {
      const r = parseTrustedProxy(e);
      if (typeof r === "string") throw new Error(`TRUSTED_PROXIES: ${JSON.stringify(e)} ${r}`);
      if ("v4" in r) {
        v4.push(r.v4, maskOf(r.bits));
        this.all.addSubnet(dotted(r.v4), r.bits, "ipv4");
      } else this.all.addSubnet(r.v6, r.bits, "ipv6");
    }
    this.v4 = Uint32Array.from(v4);
    this.size = entries.length;
  }

  has(ip: string): boolean {
    const n = v4Of(ip);
    if (n >= 0) {
      const rules = this.v4;
      for (let i = 0; i < rules.length; i += 2) if ((n & (rules[i + 1] as number)) >>> 0 === rules[i]) return true;
      return false;
    }
    return isIPv6(ip) && !ip.includes("%") && this.all.check(ip, "ipv6");
  }
}

/** The client's address: X-Forwarded-For is believed only when the peer is a trusted proxy. */
export function clientIpResolver(trustedProxies: readonly string[]) {
  const trusted = new TrustedProxies(trustedProxies);
  if (trusted.size === 0) return (peer: string | null, _forwardedFor?: string): string | null => peer;
  return (peer: string | null, forwardedFor: string | undefined): string | null => {
    if (!peer || !forwardedFor || !trusted.has(peer)) return peer;
    // Walk from the nearest hop back; the first address that is not a trusted proxy is the client.
    const hops = forwardedFor
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i] as string;
      // A hop that is not an IP address means the chain is garbage from here on: stop at the peer side.
      if (!isIPv4(hop) && !isIPv6(hop)) return peer;
      if (!trusted.has(hop)) return hop;
    }
    return hops[0] ?? peer;
  };
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/** Whether HOST binds loopback only (127.0.0.0/8, ::1, localhost): no client but this machine's can connect. */
export function isLoopbackHost(host: string): boolean {
  if (host === "localhost") return true;
  if (isIPv4(host)) return LOOPBACK.check(host, "ipv4");
  return isIPv6(host) && LOOPBACK.check(host, "ipv6");
}

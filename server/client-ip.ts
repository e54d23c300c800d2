// The client's address is personal data: CLIENT_IP_STORAGE says what of it goes into the stored
// event (full, truncated to its /24 or /48 network, or nothing). Applied at the edge, before the
// event is produced, so neither Kafka nor Postgres ever holds more than the policy allows.
import { isIPv4, isIPv6 } from "node:net";

export type ClientIpStorage = "full" | "truncated" | "none";

/** An IPv4 address's /24 network: 203.0.113.77 → 203.0.113.0. */
function truncateV4(ip: string): string {
  return `${ip.slice(0, ip.lastIndexOf("."))}.0`;
}

/** The 8 hextets of an IPv6 address (an embedded IPv4 tail counted as two). */
export function hextets(ip: string): string[] {
  let tail: string[] = [];
  let head = ip;
  const lastColon = ip.lastIndexOf(":");
  if (ip.includes(".", lastColon)) {
    const v4 = ip
      .slice(lastColon + 1)
      .split(".")
      .map(Number);
    tail = [((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0)].map((n) => n.toString(16));
    head = `${ip.slice(0, lastColon + 1)}0:0`;
  }
  const [left = "", right] = head.split("::");
  const l = left ? left.split(":") : [];
  const r = right ? right.split(":") : [];
  const groups = right === undefined ? l : [...l, ...Array.from({ length: 8 - l.length - r.length }, () => "0"), ...r];
  if (tail.length) groups.splice(6, 2, ...tail);
  return groups;
}

/**
 * An IPv6 address's /48 network: 2001:db8:abcd:12::1 → 2001:db8:abcd::. An IPv4-mapped address
 * (::ffff:203.0.113.77) is truncated as the IPv4 address it is (::ffff:203.0.113.0).
 */
function truncateV6(ip: string): string {
  const g = hextets(ip);
  const mapped = g.slice(0, 5).every((x) => Number.parseInt(x, 16) === 0) && Number.parseInt(g[5] ?? "", 16) === 0xffff;
  if (mapped) {
    const lo = Number.parseInt(g[6] ?? "0", 16);
    return `::ffff:${lo >> 8}.${lo & 0xff}.${Number.parseInt(g[7] ?? "0", 16) >> 8}.0`;
  }
  return `${g
    .slice(0, 3)
    .map((x) => Number.parseInt(x, 16).toString(16))
    .join(":")}::`;
}

/** What the stored event gets for the client's address `ip` under `mode`. */
export function storedClientIp(ip: string | null, mode: ClientIpStorage): string | null {
  if (ip === null || mode === "none") return null;
  if (mode === "full") return ip;
  if (isIPv4(ip)) return truncateV4(ip);
  // A zone (fe80::1%eth0) is not storable anyway; toScanRecord records it as unknown.
  if (isIPv6(ip) && !ip.includes("%")) return truncateV6(ip);
  return null;
}

/**
 * The key the per-address limit counts under: an IPv4 address itself, an IPv6 address's /64 (one
 * subscriber usually holds a whole /64, so its single addresses cost nothing to rotate through).
 */
export function addressKey(ip: string): string {
  if (!isIPv6(ip) || ip.includes("%")) return ip;
  const g = hextets(ip);
  const mapped = g.slice(0, 5).every((x) => Number.parseInt(x, 16) === 0) && Number.parseInt(g[5] ?? "", 16) === 0xffff;
  if (mapped) return ip;
  return `${g
    .slice(0, 4)
    .map((x) => Number.parseInt(x, 16).toString(16))
    .join(":")}::/64`;
}

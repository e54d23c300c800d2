// Client addresses (server/client-ip.ts): an IPv6 address's 8 hextets in every written form, the
// /48 and /24 truncation CLIENT_IP_STORAGE stores (IPv4-mapped addresses as IPv4, in dotted or hex
// form), and the per-address limit's key (a /64; loopback and ::-forms are not mapped).
import { describe, expect, test } from "bun:test";
import { addressKey, hextets, storedClientIp } from "../../server/client-ip.ts";

describe("hextets", () => {
  test("the 8 groups of each written form", () => {
    expect(hextets("1:2:3:4:5:6:7:8")).toEqual(["1", "2", "3", "4", "5", "6", "7", "8"]);
    expect(hextets("2001:db8::1")).toEqual(["2001", "db8", "0", "0", "0", "0", "0", "1"]);
    expect(hextets("2001:db8:1::")).toEqual(["2001", "db8", "1", "0", "0", "0", "0", "0"]);
    expect(hextets("::1")).toEqual(["0", "0", "0", "0", "0", "0", "0", "1"]);
    expect(hextets("::")).toEqual(["0", "0", "0", "0", "0", "0", "0", "0"]);
  });

  test("an embedded IPv4 tail counts as two groups", () => {
    expect(hextets("::ffff:203.5.113.77")).toEqual(["0", "0", "0", "0", "0", "ffff", "cb05", "714d"]);
    expect(hextets("64:ff9b::192.0.2.33")).toEqual(["64", "ff9b", "0", "0", "0", "0", "c000", "221"]);
    expect(hextets("1:2:3:4:5:6:10.0.0.1")).toEqual(["1", "2", "3", "4", "5", "6", "a00", "1"]);
  });
});

describe("CLIENT_IP_STORAGE=truncated", () => {
  const t = (ip: string) => storedClientIp(ip, "truncated");

  test("an IPv4-mapped address is truncated as IPv4, in dotted or hex form", () => {
    expect(t("::ffff:203.5.113.77")).toBe("::ffff:203.5.113.0");
    expect(t("::ffff:cb05:714d")).toBe("::ffff:203.5.113.0");
  });

  test("an address merely containing ffff, or zeros, is not mapped: its /48", () => {
    expect(t("2001::ffff:1:2")).toBe("2001:0:0::");
    expect(t("0:0:0:0:1:ffff:1:2")).toBe("0:0:0::");
    expect(t("::1")).toBe("0:0:0::");
  });

  test("no address, or one with a zone, stores nothing", () => {
    expect(storedClientIp(null, "full")).toBeNull();
    expect(t("fe80::1%eth0")).toBeNull();
    expect(t("gate-7")).toBeNull();
  });
});

describe("the per-address limit's key", () => {
  test("an IPv6 address by its /64; only a mapped IPv4 address as itself", () => {
    expect(addressKey("::1")).toBe("0:0:0:0::/64");
    expect(addressKey("2001::ffff:1:2")).toBe("2001:0:0:0::/64");
    expect(addressKey("0:0:0:0:1:ffff:1:2")).toBe("0:0:0:0::/64");
    expect(addressKey("::ffff:cb05:714d")).toBe("::ffff:cb05:714d");
    expect(addressKey("fe80::1%eth0")).toBe("fe80::1%eth0");
  });
});

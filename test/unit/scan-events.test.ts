// Decoding a scans message into a COPY line (shared/scan-events.ts): the column list, the line
// field by field with NULLs (\N) where the record has no value, COPY escaping, and each poison
// reason (empty, not UTF-8, not JSON, every schema violation joined). In-process, for Stryker.
import { describe, expect, test } from "bun:test";
import type { ConsumedMessage } from "bun-rdkafka";
import { toScanRecord } from "../../shared/event.ts";
import { COLUMNS, SCAN_EVENTS_COLUMNS, copyText, decode, isPoison } from "../../shared/scan-events.ts";

const ID = "9b2c4a57-1d7e-4a43-9a40-6f1f2e1d5b11";
const AT = "2026-11-25T10:00:00.000000Z";
const RECEIVED = "2026-11-25T10:00:01.000000Z";

const message = (value: Uint8Array | string | null, partition = 2, offset = 17): ConsumedMessage => ({
  topic: "scans",
  partition,
  offset,
  key: null,
  value: typeof value === "string" ? new TextEncoder().encode(value) : value,
  headers: null,
  timestamp: 0,
});
const lineOf = (value: string | Uint8Array) => {
  const d = decode(message(value));
  if (isPoison(d)) throw new Error(d.error);
  return d.line;
};
const reasonOf = (value: string | Uint8Array | null) => {
  const d = decode(message(value));
  return isPoison(d) ? d.error : "not poison";
};

describe("columns", () => {
  test("the insert columns are scan_events' in table order, without ingested_at (Postgres sets it)", () => {
    expect(COLUMNS).toEqual([
      "event_id",
      "scanned_at",
      "qr_id",
      "scanner_id",
      "lat",
      "lon",
      "accuracy_m",
      "user_agent",
      "attributes",
      "client_ip",
      "received_at",
      "schema_version",
      "kafka_partition",
      "kafka_offset",
      "sent_at",
      "derived_at",
    ]);
    expect(SCAN_EVENTS_COLUMNS).toContain("ingested_at");
  });
});

describe("the COPY line", () => {
  test("a minimal record: every optional column \\N, one field per insert column", () => {
    const line = lineOf(JSON.stringify(toScanRecord({ event_id: ID, qr_id: "QR-1", scanned_at: AT }, RECEIVED, null)));
    expect(line).toBe(`${ID}\t${AT}\tQR-1\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t${RECEIVED}\t2\t2\t17\t\\N\t${AT}\n`);
    expect(line.slice(0, -1).split("\t")).toHaveLength(COLUMNS.length);
  });

  test("sent_at and derived_at as the record has them; a version 1 record's derived_at is its scanned_at", () => {
    const sent = "2026-11-25T08:00:00.000000Z";
    const derived = "2026-11-25T10:00:00.250000Z";
    const v2 = toScanRecord({ event_id: ID, qr_id: "QR-1", scanned_at: AT, sent_at: sent }, RECEIVED, null, derived);
    expect(lineOf(JSON.stringify(v2)).split("\t").slice(-2)).toEqual([sent, `${derived}\n`]);
    const { derived_at: _, sent_at: __, ...v1 } = { ...v2, schema_version: 1 };
    expect(lineOf(JSON.stringify(v1)).split("\t").slice(-5)).toEqual(["1", "2", "17", "\\N", `${AT}\n`]);
  });

  test("a full record: numbers as written, text and attributes' JSON escaped for COPY", () => {
    const record = toScanRecord(
      {
        event_id: ID,
        qr_id: "QR-1",
        scanned_at: AT,
        scanner_id: "gate\t7",
        location: { lat: 52.52, lon: -13.4, accuracy_m: 0 },
        user_agent: "line\nbreak\r\\",
        attributes: { note: "a\tb", n: 2 },
      },
      RECEIVED,
      "10.0.0.7",
    );
    expect(lineOf(JSON.stringify(record))).toBe(
      `${ID}\t${AT}\tQR-1\tgate\\t7\t52.52\t-13.4\t0\tline\\nbreak\\r\\\\\t{"note":"a\\\\tb","n":2}\t10.0.0.7\t${RECEIVED}\t2\t2\t17\t\\N\t${AT}\n`,
    );
  });

  test("a row carries its partition day, qr_id and canonical derived_at (the sink's minute counts), and its message", () => {
    // Sent with an offset: the row carries the canonical UTC text Postgres files it under.
    const record = { ...toScanRecord({ event_id: ID, qr_id: "QR-9", scanned_at: AT }, RECEIVED, null) };
    const m = message(JSON.stringify({ ...record, scanned_at: "2026-11-25T11:00:00+01:00" }));
    const d = decode(m);
    if (isPoison(d)) throw new Error(d.error);
    expect({ day: d.day, qrId: d.qrId, derivedAt: d.derivedAt }).toEqual({
      day: AT.slice(0, 10),
      qrId: "QR-9",
      derivedAt: AT,
    });
    expect(d.message).toBe(m);
  });

  test("copyText escapes each special character, alone or among others", () => {
    expect(copyText("\t")).toBe("\\t");
    expect(copyText("\\")).toBe("\\\\");
    expect(copyText("\n\r")).toBe("\\n\\r");
    expect(copyText("")).toBe("");
    expect(copyText("a b")).toBe("a b");
  });
});

describe("poison", () => {
  const valid = () => toScanRecord({ event_id: ID, qr_id: "QR-1", scanned_at: AT }, RECEIVED, null);

  test("an empty value, JSON that does not parse, bytes that are not UTF-8", () => {
    expect(reasonOf(null)).toBe("empty message value");
    expect(reasonOf("{oops")).toStartWith("undecodable payload: ");
    // A stray byte inside a string: replacing it with U+FFFD would store text nobody sent.
    const json = JSON.stringify({ ...valid(), scanner_id: "gate-XX" });
    const bytes = new TextEncoder().encode(json);
    bytes[bytes.indexOf(0x58)] = 0xff;
    expect(reasonOf(bytes)).toStartWith("undecodable payload: ");
  });

  test("every schema violation is named, path first, joined by '; '", () => {
    expect(reasonOf(JSON.stringify({ ...valid(), qr_id: "no spaces", client_ip: "fe80::1%eth0" }))).toBe(
      "schema violation: qr_id: must be 1-128 characters of A-Z a-z 0-9 . _ : -; client_ip: must be an IPv4 or IPv6 address without a zone",
    );
  });
});

// Reads a POST /v1/scans body into a list of raw events, enforcing the limits before anything is
// parsed: body size (also after gzip decompression, so a gzip bomb is a 413, not an OOM), content
// type, charset (UTF-8 only) and encoding, well-formed UTF-8, and events per request.
import { gunzipSync } from "node:zlib";
import { ApiError } from "./errors.ts";

export interface BodyLimits {
  maxBytes: number;
  maxEvents: number;
}

type Format = "json" | "ndjson";

function formatOf(contentType: string | undefined): Format {
  const [mediaType = "", ...parameters] = (contentType ?? "").split(";");
  const type = mediaType.trim().toLowerCase();
  let format: Format;
  if (type === "application/json" || (type.startsWith("application/") && type.endsWith("+json"))) format = "json";
  else if (type === "application/x-ndjson" || type === "application/ndjson" || type === "application/jsonl") {
    format = "ndjson";
  } else {
    throw new ApiError(415, `unsupported Content-Type "${type}": use application/json or application/x-ndjson`);
  }
  for (const parameter of parameters) checkCharset(parameter);
  return format;
}

/** A `charset` parameter other than UTF-8 (any case, quoted or not) is a 415; other parameters are ignored. */
function checkCharset(parameter: string): void {
  const eq = parameter.indexOf("=");
  if (eq < 0 || parameter.slice(0, eq).trim().toLowerCase() !== "charset") return;
  let value = parameter.slice(eq + 1).trim();
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
  const charset = value.toLowerCase();
  if (charset === "utf-8" || charset === "utf8") return;
  throw new ApiError(
    415,
    `unsupported charset "${value}": the body must be UTF-8 (send charset=utf-8, or no charset parameter)`,
  );
}

// Stateless between calls (no {stream: true}), so one instance serves every request.
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The body as text; bytes that are not well-formed UTF-8 are a 400, never replaced with U+FFFD. */
function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new ApiError(400, `the body is not valid UTF-8 (first invalid byte at offset ${firstInvalidUtf8(bytes)})`);
  }
}

/** Offset of the first byte that does not start or continue a well-formed UTF-8 sequence (error path only). */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const lead = b[i] as number;
    if (lead < 0x80) {
      i++;
      continue;
    }
    // Continuation bytes after the lead; the second byte's range excludes overlongs and surrogates.
    const n =
      lead >= 0xc2 && lead <= 0xdf ? 1 : lead >= 0xe0 && lead <= 0xef ? 2 : lead >= 0xf0 && lead <= 0xf4 ? 3 : 0;
    if (n === 0) return i;
    const lo = lead === 0xe0 ? 0xa0 : lead === 0xf0 ? 0x90 : 0x80;
    const hi = lead === 0xed ? 0x9f : lead === 0xf4 ? 0x8f : 0xbf;
    const second = b[i + 1];
    if (second === undefined || second < lo || second > hi) return i;
    for (let k = 2; k <= n; k++) if (((b[i + k] ?? 0) & 0xc0) !== 0x80) return i;
    i += n + 1;
  }
  return -1;
}

/**
 * The body, at most `maxBytes` after decompression, else 413. Bun.serve's maxRequestBodySize bounds
 * what arrives on the wire; gzip is inflated with a hard output cap, so a bomb stops at the limit.
 * (req.arrayBuffer() is Bun's native path: a ReadableStream reader cost ~40% of a request's CPU.)
 */
async function readLimited(req: Request, maxBytes: number): Promise<Uint8Array> {
  const encoding = (req.headers.get("content-encoding") ?? "identity").trim().toLowerCase();
  if (encoding !== "identity" && encoding !== "gzip") {
    throw new ApiError(415, `unsupported Content-Encoding "${encoding}": use gzip or none`);
  }
  const declared = Number(req.headers.get("content-length") ?? Number.NaN);
  if (declared > maxBytes) throw new ApiError(413, `body is larger than ${maxBytes} bytes`);
  let raw: Uint8Array;
  try {
    raw = new Uint8Array(await req.arrayBuffer());
  } catch (error) {
    throw new ApiError(400, `could not read the body: ${(error as Error).message}`);
  }
  if (raw.byteLength > maxBytes) throw new ApiError(413, `body is larger than ${maxBytes} bytes`);
  if (encoding === "identity") return raw;
  try {
    return gunzipSync(raw, { maxOutputLength: maxBytes });
  } catch (error) {
    if ((error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new ApiError(413, `body is larger than ${maxBytes} bytes decompressed`);
    }
    throw new ApiError(400, `invalid gzip body: ${(error as Error).message}`);
  }
}

function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ApiError(400, `malformed JSON${where}: ${(error as Error).message}`);
  }
}

/** The raw (unvalidated) events of the request, in order. */
export async function readEvents(req: Request, limits: BodyLimits): Promise<unknown[]> {
  const format = formatOf(req.headers.get("content-type") ?? undefined);
  const text = decodeUtf8(await readLimited(req, limits.maxBytes));
  let events: unknown[];
  if (format === "json") {
    const body = parseJson(text, "");
    events = Array.isArray(body) ? body : [body];
  } else {
    events = [];
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = (lines[i] as string).trim();
      if (line) events.push(parseJson(line, ` on NDJSON line ${i + 1}`));
    }
  }
  if (events.length === 0) throw new ApiError(400, "no events in the body");
  if (events.length > limits.maxEvents) {
    throw new ApiError(413, `${events.length} events in one request; the limit is ${limits.maxEvents}`);
  }
  return events;
}

import { gunzipSync } from "node:zlib";
// Reads a POST /v1/scans body into a list of raw events, enforcing the limits before anything is
// parsed: body size (also after gzip decompression, so a gzip bomb is a 413, not an OOM), content
// type and encoding, and events per request.

export class HttpError extends Error {
  constructor(
    readonly status: 400 | 413 | 415,
    message: string,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

export interface BodyLimits {
  maxBytes: number;
  maxEvents: number;
}

type Format = "json" | "ndjson";

function formatOf(contentType: string | undefined): Format {
  const type = (contentType ?? "").split(";")[0]?.trim().toLowerCase();
  if (type === "application/json" || (type?.startsWith("application/") && type.endsWith("+json"))) return "json";
  if (type === "application/x-ndjson" || type === "application/ndjson" || type === "application/jsonl") {
    return "ndjson";
  }
  throw new HttpError(415, `unsupported Content-Type "${type ?? ""}": use application/json or application/x-ndjson`);
}

/**
 * The body, at most `maxBytes` after decompression, else 413. Bun.serve's maxRequestBodySize bounds
 * what arrives on the wire; gzip is inflated with a hard output cap, so a bomb stops at the limit.
 * (req.arrayBuffer() is Bun's native path: a ReadableStream reader cost ~40% of a request's CPU.)
 */
async function readLimited(req: Request, maxBytes: number): Promise<Uint8Array> {
  const encoding = (req.headers.get("content-encoding") ?? "identity").trim().toLowerCase();
  if (encoding !== "identity" && encoding !== "gzip") {
    throw new HttpError(415, `unsupported Content-Encoding "${encoding}": use gzip or none`);
  }
  const declared = Number(req.headers.get("content-length") ?? Number.NaN);
  if (declared > maxBytes) throw new HttpError(413, `body is larger than ${maxBytes} bytes`);
  let raw: Uint8Array;
  try {
    raw = new Uint8Array(await req.arrayBuffer());
  } catch (error) {
    throw new HttpError(400, `could not read the body: ${(error as Error).message}`);
  }
  if (raw.byteLength > maxBytes) throw new HttpError(413, `body is larger than ${maxBytes} bytes`);
  if (encoding === "identity") return raw;
  try {
    return gunzipSync(raw, { maxOutputLength: maxBytes });
  } catch (error) {
    if ((error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new HttpError(413, `body is larger than ${maxBytes} bytes decompressed`);
    }
    throw new HttpError(400, `invalid gzip body: ${(error as Error).message}`);
  }
}

function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, `malformed JSON${where}: ${(error as Error).message}`);
  }
}

/** The raw (unvalidated) events of the request, in order. */
export async function readEvents(req: Request, limits: BodyLimits): Promise<unknown[]> {
  const format = formatOf(req.headers.get("content-type") ?? undefined);
  const text = new TextDecoder("utf-8", { fatal: false }).decode(await readLimited(req, limits.maxBytes));
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
  if (events.length === 0) throw new HttpError(400, "no events in the body");
  if (events.length > limits.maxEvents) {
    throw new HttpError(413, `${events.length} events in one request; the limit is ${limits.maxEvents}`);
  }
  return events;
}

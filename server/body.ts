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

/** Reads at most `maxBytes` (decompressed) from the request body, else throws 413. */
async function readLimited(req: Request, maxBytes: number): Promise<Uint8Array> {
  const encoding = (req.headers.get("content-encoding") ?? "identity").trim().toLowerCase();
  if (encoding !== "identity" && encoding !== "gzip") {
    throw new HttpError(415, `unsupported Content-Encoding "${encoding}": use gzip or none`);
  }
  const declared = Number(req.headers.get("content-length") ?? Number.NaN);
  if (declared > maxBytes) throw new HttpError(413, `body is larger than ${maxBytes} bytes`);
  if (!req.body) return new Uint8Array();

  let stream: ReadableStream<Uint8Array> = req.body;
  if (encoding === "gzip")
    stream = stream.pipeThrough(new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        throw new HttpError(413, `body is larger than ${maxBytes} bytes${encoding === "gzip" ? " decompressed" : ""}`);
      }
      chunks.push(value);
    }
  } catch (error) {
    if (error instanceof HttpError) throw error;
    throw new HttpError(400, `could not read the body: ${encoding === "gzip" ? "invalid gzip data" : String(error)}`);
  } finally {
    reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks);
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

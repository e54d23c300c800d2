// API-key authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`. Keys are configured
// only as SHA-256 hex digests and compared in constant time; the plaintext is never stored or logged.
import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { ApiError } from "./errors.ts";

export interface ApiKeyAuthOptions {
  /** SHA-256 hex digests of the accepted keys. */
  hashes: readonly string[];
  disabled?: boolean;
}

export const sha256 = (s: string) => createHash("sha256").update(s).digest();

export function apiKeyAuth({ hashes, disabled = false }: ApiKeyAuthOptions): MiddlewareHandler {
  const digests = hashes.map((h) => Buffer.from(h, "hex"));
  return async function apiKeyAuth(c, next) {
    if (disabled) return next();
    const header = c.req.header("authorization");
    const key = header?.toLowerCase().startsWith("bearer ") ? header.slice(7).trim() : c.req.header("x-api-key");
    if (key) {
      const digest = sha256(key);
      // Compare with every configured digest, so timing does not tell which (or whether one) matched.
      let ok = false;
      for (const d of digests) ok = timingSafeEqual(d, digest) || ok;
      if (ok) return next();
    }
    throw new ApiError(401, key ? "invalid API key" : "missing API key: send Authorization: Bearer <key> or X-API-Key");
  };
}

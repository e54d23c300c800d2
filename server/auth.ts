// API-key authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`. Keys are configured
// only as SHA-256 hex digests and compared in constant time; the plaintext is never stored or logged.
import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { ApiError } from "./errors.ts";
import { type Principal, SCOPES } from "./principal.ts";

export interface ApiKeyAuthOptions {
  /** SHA-256 hex digests of the accepted keys. */
  hashes: readonly string[];
  disabled?: boolean;
}

export const sha256 = (s: string) => createHash("sha256").update(s).digest();

/** A static key's principal: both scopes, no tenant prefix, the default rate limit. */
function staticPrincipal(hex: string): Principal {
  const id = `static:${hex.slice(0, 8).toLowerCase()}`;
  return { kind: "static_key", id, name: id, scopes: new Set(SCOPES), qrPrefix: null, rateLimit: null };
}

const DISABLED: Principal = {
  kind: "disabled",
  id: "disabled",
  name: "AUTH_DISABLED",
  scopes: new Set(SCOPES),
  qrPrefix: null,
  rateLimit: null,
};

export function apiKeyAuth({ hashes, disabled = false }: ApiKeyAuthOptions): MiddlewareHandler {
  const digests = hashes.map((h) => Buffer.from(h, "hex"));
  const principals = hashes.map(staticPrincipal);
  return async function apiKeyAuth(c, next) {
    if (disabled) {
      c.set("principal", DISABLED);
      return next();
    }
    const header = c.req.header("authorization");
    const key = header?.toLowerCase().startsWith("bearer ") ? header.slice(7).trim() : c.req.header("x-api-key");
    if (key) {
      const digest = sha256(key);
      // Compare with every configured digest, so timing does not tell which (or whether one) matched.
      let matched = -1;
      for (let i = 0; i < digests.length; i++) if (timingSafeEqual(digests[i] as Buffer, digest)) matched = i;
      if (matched >= 0) {
        c.set("principal", principals[matched] as Principal);
        return next();
      }
    }
    throw new ApiError(401, key ? "invalid API key" : "missing API key: send Authorization: Bearer <key> or X-API-Key");
  };
}

// The managed API keys' vocabulary, one definition for the edge (server/keys.ts, server/auth.ts)
// and the `keys` job (jobs/keys.ts): the secret's format and digest, the scopes, and the tenant
// prefix's shape. Whatever the job writes into api_keys, the edge reads with these same rules.
import { createHash, randomBytes } from "node:crypto";

export const sha256 = (s: string) => createHash("sha256").update(s).digest();

/** The secrets `bun run keys create` prints: "qrs_" + 32 random bytes, base64url (43 characters). */
export const KEY_PREFIX = "qrs_";
/** A generated secret's shape: 256 random bits, so its unsalted SHA-256 cannot be reversed. */
export const GENERATED_KEY = /^qrs_[A-Za-z0-9_-]{43}$/;
/** How many of a secret's characters may be shown (logs, `keys list`): "qrs_" + 4 random ones. */
export const SHOWN_PREFIX_LENGTH = 8;

/** A new secret: "qrs_" and 32 random bytes, base64url. */
export function newSecret(): string {
  return KEY_PREFIX + randomBytes(32).toString("base64url");
}

export type Scope = "scans:write" | "stats:read";
export const SCOPES: readonly Scope[] = ["scans:write", "stats:read"];

/**
 * The one delimiter of a tenant prefix. QR ids are `A-Za-z0-9._:-` (docs/api.md): `-` and `.` sit
 * inside names (`gate-7`, `ticket-123`, `acme-eu`), `:` separates levels (`gate-7:ticket-123`). A
 * prefix ending in `-` would cover other names (`acme-` takes `acme-eu-…`), one ending in `:`
 * covers whole segments only.
 */
export const TENANT_DELIMITER = ":";
/** A tenant prefix: one or more segments, each ended by `:` (`acme:`, `acme:eu:`); at most 127 characters. */
export const TENANT_PREFIX = /^(?:[A-Za-z0-9._-]+:)+$/;
export const TENANT_PREFIX_MAX_LENGTH = 127;

/** Whether `s` has the shape of a tenant prefix (the keys job, migration 0007 and the JWT claim all use it). */
export function isTenantPrefix(s: unknown): s is string {
  return typeof s === "string" && s.length <= TENANT_PREFIX_MAX_LENGTH && TENANT_PREFIX.test(s);
}

/**
 * Whether `qrId` belongs to the tenant `prefix`: the same check on the write and the read route.
 * A prefix that does not end with the delimiter (a row written before migration 0007) matches
 * nothing: fail closed.
 */
export function inTenant(qrId: string, prefix: string): boolean {
  return prefix.endsWith(TENANT_DELIMITER) && qrId.startsWith(prefix);
}

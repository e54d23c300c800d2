// Who a request is (Principal) and the vocabulary of authentication shared by the auth middleware
// and the metrics: scopes, tenant prefixes, and why a credential was refused. A leaf module: it
// imports nothing of the server, so metrics.ts can name the refusal reasons without importing auth.ts.
import type {} from "hono";
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

/** Whether `s` has the shape of a tenant prefix (the keys CLI, migration 0007 and the JWT claim all use it). */
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

/** Who made the request, set by the auth middleware with c.set("principal", p). */
export interface Principal {
  kind: "api_key" | "static_key" | "jwt" | "disabled";
  /** Stable id for limits, logs and metrics: the key id, "static:<first 8 hex of the digest>", or the JWT's iss+sub. Never secret. */
  id: string;
  name: string;
  scopes: ReadonlySet<Scope>;
  /** The tenant: QR ids this principal may touch start with this prefix (inTenant), or null for all. */
  qrPrefix: string | null;
  /** Per-key override of the default rate limit, in events per second and burst; null = default. */
  rateLimit: { eventsPerSecond: number; burst: number } | null;
}
declare module "hono" {
  interface ContextVariableMap {
    principal: Principal;
  }
}

/** auth_failures_total's reasons: 401s, then 403s (scope, tenant); 503 when JWT keys cannot be fetched. */
export const AUTH_FAILURE_REASONS = [
  "missing",
  "unknown_key",
  "revoked_key",
  "expired_key",
  "weak_key",
  "jwt_malformed",
  "jwt_algorithm",
  "jwt_signature",
  "jwt_unknown_kid",
  "jwt_expired",
  "jwt_not_yet_valid",
  "jwt_claims",
  "jwt_tenant",
  "jwt_lifetime",
  "jwt_keys_unavailable",
  "scope",
  "tenant",
] as const;
export type AuthFailureReason = (typeof AUTH_FAILURE_REASONS)[number];

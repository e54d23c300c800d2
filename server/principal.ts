// Who a request is (Principal) and why a credential was refused, shared by the auth middleware and
// the metrics (scopes and tenant prefixes are shared/api-keys.ts', which the keys job uses too). A
// leaf module: it imports nothing of the server, so metrics.ts can name the refusal reasons
// without importing auth.ts.
import type {} from "hono";
import type { Scope } from "../shared/api-keys.ts";
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

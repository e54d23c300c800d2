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

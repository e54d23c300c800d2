import type {} from "hono";
export type Scope = "scans:write" | "stats:read";
export const SCOPES: readonly Scope[] = ["scans:write", "stats:read"];
/** Who made the request, set by the auth middleware with c.set("principal", p). */
export interface Principal {
  kind: "api_key" | "static_key" | "jwt" | "disabled";
  /** Stable id for limits, logs and metrics: the key id, "static:<first 8 hex of the digest>", or the JWT's iss+sub. Never secret. */
  id: string;
  name: string;
  scopes: ReadonlySet<Scope>;
  /** QR ids this principal may touch must start with this (a tenant), or null for all. */
  qrPrefix: string | null;
  /** Per-key override of the default rate limit, in events per second and burst; null = default. */
  rateLimit: { eventsPerSecond: number; burst: number } | null;
}
declare module "hono" {
  interface ContextVariableMap {
    principal: Principal;
  }
}

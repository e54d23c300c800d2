// Authentication and authorisation of the API routes. A request presents one credential:
//   - an API key, as `Authorization: Bearer <key>` or `X-API-Key: <key>`: a managed key (`qrs_…`,
//     the api_keys table via server/keys.ts) or a static one (API_KEY_SHA256 / API_KEYS_FILE, both
//     scopes, no tenant, accepted only in the generated shape of `bun run keys static`). Only
//     SHA-256 digests are held; lookup is by digest, so the time taken tells nothing about the secret.
//   - a JWT, as `Authorization: Bearer <jwt>` (told apart by its three dot-separated parts), when
//     JWT_JWKS_URL or JWT_KEY_FILES is set: asymmetric algorithms from JWT_ALGORITHMS only, issuer,
//     audience, exp and nbf (with JWT_CLOCK_SKEW_SECONDS) checked, exp at most
//     JWT_MAX_LIFETIME_SECONDS away; scopes from the `scope` claim; the tenant claim required
//     (a tenant prefix) unless JWT_ALLOW_GLOBAL_TOKENS=true.
// The middleware sets c.get("principal") (server/principal.ts). A missing or invalid credential is
// a 401; a valid one without the route's scope, or for a QR id outside its tenant, is a 403. Every
// failure counts in auth_failures_total{reason} and is logged with the key's shown prefix or the
// JWT's kid/sub only, never the secret, at most once per reason per 10 s.
import type { Context, MiddlewareHandler } from "hono";
import {
  type JWTPayload,
  type JWTVerifyGetKey,
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
} from "jose";
import {
  GENERATED_KEY,
  KEY_PREFIX,
  SCOPES,
  SHOWN_PREFIX_LENGTH,
  type Scope,
  inTenant,
  isTenantPrefix,
  sha256,
} from "../shared/api-keys.ts";
import { type Logger, throttledWarn } from "../shared/logger.ts";
import type { JwtConfig, ServerConfig } from "./config.ts";
import { ApiError } from "./errors.ts";
import type { KeyRecord, KeyStore } from "./keys.ts";
import type { ServerMetrics } from "./metrics.ts";
import { AUTH_FAILURE_REASONS, type AuthFailureReason, type Principal } from "./principal.ts";
import { requestLogFields } from "./tracing.ts";

export interface AuthOptions {
  config: Pick<ServerConfig, "AUTH_DISABLED" | "apiKeyHashes" | "jwt" | "RETRY_AFTER_SECONDS">;
  /** Managed keys; absent: static keys and JWTs only. */
  keyStore?: KeyStore | null;
  metrics: Pick<ServerMetrics, "authFailures">;
  logger: Logger;
}

export interface Auth {
  /** The route's middleware: authenticates (401), then checks `scope` and, with `qrIdParam`, the tenant (403). */
  require(scope: Scope, opts?: { qrIdParam?: string }): MiddlewareHandler;
  /** The 403 for a QR id outside the principal's tenant (counted and logged); the ingest loop throws it. */
  tenantDenied(c: Context, qrId: string, index?: number): ApiError;
  /** Whether any credential can be verified: false only before the managed keys loaded with nothing else configured. */
  trusted(): boolean;
}

const DISABLED: Principal = {
  kind: "disabled",
  id: "disabled",
  name: "AUTH_DISABLED",
  scopes: new Set(SCOPES),
  qrPrefix: null,
  rateLimit: null,
};

/** Static keys (API_KEY_SHA256, API_KEYS_FILE): both scopes, no tenant, the default rate limit. */
export function staticKeyRecords(hashes: readonly string[]): Map<string, KeyRecord> {
  const out = new Map<string, KeyRecord>();
  for (const h of hashes) {
    const hex = h.toLowerCase();
    const id = `static:${hex.slice(0, 8)}`;
    out.set(hex, {
      principal: { kind: "static_key", id, name: id, scopes: new Set(SCOPES), qrPrefix: null, rateLimit: null },
      expiresAt: null,
      revoked: false,
      usedAt: 0,
    });
  }
  return out;
}

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** What a log line may say about a presented key: the shown prefix of a `qrs_` key, else only its length. */
export function keyHint(key: string): Record<string, string | number> {
  return key.startsWith(KEY_PREFIX) && key.length > SHOWN_PREFIX_LENGTH + 8
    ? { key_prefix: key.slice(0, SHOWN_PREFIX_LENGTH) }
    : { key_length: key.length };
}

class AuthFailure extends Error {
  constructor(
    readonly reason: AuthFailureReason,
    message: string,
    readonly hint: Record<string, unknown>,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export function createAuth(o: AuthOptions): Auth {
  const statics = staticKeyRecords(o.config.apiKeyHashes);
  const jwt = o.config.jwt ? jwtVerifier(o.config.jwt) : null;
  const warn = throttledWarn(o.logger, 10_000);
  const counters = new Map(AUTH_FAILURE_REASONS.map((r) => [r, o.metrics.authFailures.labels({ reason: r })]));
  const retryAfter = { "Retry-After": String(o.config.RETRY_AFTER_SECONDS) };

  function audit(c: Context, reason: AuthFailureReason, fields: Record<string, unknown>, msg: string) {
    counters.get(reason)?.inc();
    warn(reason, { reason, ...fields, ...requestLogFields(c) }, msg);
  }

  async function authenticate(c: Context): Promise<Principal> {
    const header = c.req.header("authorization");
    const bearer = header && /^bearer /i.test(header) ? header.slice(7).trim() : undefined;
    const credential = bearer || c.req.header("x-api-key");
    if (!credential) {
      throw new AuthFailure(
        "missing",
        "missing credentials: send Authorization: Bearer <API key or JWT>, or X-API-Key: <API key>",
        {},
      );
    }
    if (jwt && bearer && !bearer.startsWith(KEY_PREFIX) && JWT_SHAPE.test(bearer)) return jwt(bearer);
    const digest = sha256(credential).toString("hex");
    const record = statics.get(digest) ?? o.keyStore?.lookup(digest);
    const hint = keyHint(credential);
    if (!record) throw new AuthFailure("unknown_key", "invalid API key", hint);
    const id = { ...hint, key_id: record.principal.id };
    // A static key's digest sits in the environment, unsalted: only a 256-bit random key (`bun run
    // keys static`) keeps it from being reversed offline, so a key of another shape is refused.
    if (record.principal.kind === "static_key" && !GENERATED_KEY.test(credential)) {
      throw new AuthFailure(
        "weak_key",
        "API key refused: static keys must come from `bun run keys static` (qrs_ and 43 random characters); ask the operator for one",
        id,
      );
    }
    if (record.revoked) throw new AuthFailure("revoked_key", "API key revoked: ask for a new one", id);
    const now = Date.now();
    if (record.expiresAt !== null && record.expiresAt <= now) {
      throw new AuthFailure("expired_key", "API key expired: ask for a new one", id);
    }
    record.usedAt = now;
    return record.principal;
  }

  function denied(c: Context, reason: "scope" | "tenant", message: string, fields: Record<string, unknown>) {
    const p = c.get("principal");
    audit(c, reason, { principal: p.id, kind: p.kind, ...fields }, "request forbidden; answered 403");
    return new ApiError(403, message);
  }

  const api: Auth = {
    require(scope, { qrIdParam } = {}) {
      return async function requireAuth(c, next) {
        if (o.config.AUTH_DISABLED) {
          c.set("principal", DISABLED);
          return next();
        }
        let principal: Principal;
        try {
          principal = await authenticate(c);
        } catch (error) {
          if (!(error instanceof AuthFailure)) throw error;
          if (error.reason === "jwt_keys_unavailable") {
            // The server's problem, not the client's: the cause (the JWKS fetch's error) is what to fix.
            audit(
              c,
              error.reason,
              { ...error.hint, err: error.cause },
              "could not fetch the JWT verification keys; answered 503",
            );
            throw new ApiError(503, error.message, { headers: retryAfter });
          }
          audit(c, error.reason, error.hint, "authentication failed; answered 401");
          throw new ApiError(401, error.message);
        }
        c.set("principal", principal);
        if (!principal.scopes.has(scope)) {
          throw denied(c, "scope", `this credential lacks the scope ${scope}`, { scope });
        }
        if (qrIdParam && principal.qrPrefix !== null) {
          const qrId = c.req.param(qrIdParam) ?? "";
          if (!inTenant(qrId, principal.qrPrefix)) throw api.tenantDenied(c, qrId);
        }
        return next();
      };
    },
    tenantDenied(c, qrId, index) {
      const prefix = c.get("principal").qrPrefix;
      const where = index === undefined ? "" : `event ${index}: `;
      return denied(
        c,
        "tenant",
        `${where}qr_id ${JSON.stringify(qrId)} is outside this credential's QR ids (${prefix}…)`,
        {
          qr_id: qrId.slice(0, 64),
        },
      );
    },
    trusted: () => o.config.AUTH_DISABLED || statics.size > 0 || jwt !== null || (o.keyStore?.loaded ?? false),
  };
  return api;
}

/** Verifies a JWT to a principal, or throws an AuthFailure naming why not. */
export function jwtVerifier(j: JwtConfig): (token: string) => Promise<Principal> {
  const local = j.keys.length ? createLocalJWKSet({ keys: j.keys }) : null;
  const remote = j.jwksUrl
    ? createRemoteJWKSet(new URL(j.jwksUrl), { cooldownDuration: j.jwksCooldownSeconds * 1000, timeoutDuration: 5_000 })
    : null;
  const getKey: JWTVerifyGetKey = async (header, token) => {
    if (local) {
      try {
        return await local(header, token);
      } catch (error) {
        if (!remote || !(error instanceof joseErrors.JWKSNoMatchingKey)) throw error;
      }
    }
    return (remote as NonNullable<typeof remote>)(header, token);
  };
  return async function verify(token) {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, getKey, {
        issuer: j.issuer,
        audience: j.audience,
        algorithms: j.algorithms,
        clockTolerance: j.clockSkewSeconds,
        requiredClaims: ["exp", "sub"],
      }));
    } catch (error) {
      const [reason, message] = jwtFailure(error);
      throw new AuthFailure(reason, message, jwtHint(token), { cause: error });
    }
    // A JWT cannot be revoked: bound how long a leaked one stays usable, whatever exp the IdP wrote.
    const remaining = (payload.exp as number) - Date.now() / 1000;
    if (remaining > j.maxLifetimeSeconds + j.clockSkewSeconds) {
      throw new AuthFailure(
        "jwt_lifetime",
        `JWT lifetime too long: exp is ${Math.round(remaining)} s away, at most JWT_MAX_LIFETIME_SECONDS (${j.maxLifetimeSeconds}) accepted; issue shorter-lived tokens`,
        jwtHint(token),
      );
    }
    // No tenant claim would mean every tenant: only when the operator said so. A claim that is
    // there but not a tenant prefix is a broken claim mapper, refused even then.
    const tenant = payload[j.tenantClaim];
    let qrPrefix: string | null = null;
    if (isTenantPrefix(tenant)) qrPrefix = tenant;
    else if (tenant !== undefined || !j.allowGlobalTokens) {
      throw new AuthFailure(
        "jwt_tenant",
        `JWT rejected: its ${j.tenantClaim} claim is ${tenant === undefined ? "missing" : "not a tenant prefix"} (one or more segments ending in ":", e.g. "acme:")`,
        jwtHint(token),
      );
    }
    const scopes = new Set<Scope>();
    const claimed = typeof payload.scope === "string" ? payload.scope.split(" ") : [];
    for (const s of claimed) if ((SCOPES as readonly string[]).includes(s)) scopes.add(s as Scope);
    return {
      kind: "jwt",
      id: `${payload.iss}#${payload.sub}`,
      name: String(payload.sub),
      scopes,
      qrPrefix,
      rateLimit: null,
    };
  };
}

/** The kid and sub a failing token claims (unverified: for the audit log only). */
function jwtHint(token: string): Record<string, unknown> {
  const hint: Record<string, unknown> = {};
  try {
    const kid = decodeProtectedHeader(token).kid;
    if (kid) hint.jwt_kid = String(kid).slice(0, 64);
    const sub = decodeJwt(token).sub;
    if (sub) hint.jwt_sub = String(sub).slice(0, 64);
  } catch {
    // undecodable: the reason says so; there is nothing more to log
  }
  return hint;
}

function jwtFailure(error: unknown): [AuthFailureReason, string] {
  const code = (error as { code?: string }).code;
  switch (code) {
    case "ERR_JWT_EXPIRED":
      return ["jwt_expired", "JWT expired"];
    case "ERR_JWT_CLAIM_VALIDATION_FAILED": {
      const claim = (error as joseErrors.JWTClaimValidationFailed).claim;
      if (claim === "nbf") return ["jwt_not_yet_valid", "JWT not valid yet (nbf)"];
      return ["jwt_claims", `JWT rejected: ${claim} claim is missing or not accepted`];
    }
    case "ERR_JOSE_ALG_NOT_ALLOWED":
      return ["jwt_algorithm", "JWT algorithm not accepted"];
    case "ERR_JWKS_NO_MATCHING_KEY":
      return ["jwt_unknown_kid", "JWT signed with an unknown key"];
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return ["jwt_signature", "JWT signature invalid"];
    case "ERR_JWKS_TIMEOUT":
    case "ERR_JWKS_INVALID":
      return ["jwt_keys_unavailable", "JWT keys unavailable; retry later"];
    case "ERR_JOSE_GENERIC":
      // The JWKS endpoint answered something other than 200 or unparsable JSON.
      if (/JSON Web Key Set/.test((error as Error).message)) {
        return ["jwt_keys_unavailable", "JWT keys unavailable; retry later"];
      }
      return ["jwt_malformed", "JWT malformed"];
    default:
      // Not a JOSE error: the JWKS fetch itself failed (connection refused, HTTP error).
      if (!(error instanceof joseErrors.JOSEError))
        return ["jwt_keys_unavailable", "JWT keys unavailable; retry later"];
      return ["jwt_malformed", "JWT malformed"];
  }
}

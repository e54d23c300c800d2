// Rate limits at the edge: token buckets per API key (counted in events) and per client IP (counted
// in failed authentications), answered with 429, Retry-After and the RateLimit / RateLimit-Policy
// fields of draft-ietf-httpapi-ratelimit-headers-10 (structured fields: a policy name, then
// `q` quota and `w` window in RateLimit-Policy, `r` remaining and `t` seconds to reset in RateLimit).
// The buckets live in this process: with N live replicas each one enforces 1/N of the configured
// rates and bursts, N counted at run time (server/replicas.ts, setReplicas); see docs/security.md
// "Rate limits".
import type { Context, MiddlewareHandler } from "hono";
import type { Counter } from "prom-client";
import { KEY_PREFIX } from "../shared/api-keys.ts";
import type { Logger } from "../shared/logger.ts";
import { throttledWarn } from "../shared/logger.ts";
import { addressKey } from "./client-ip.ts";
import { ApiError, errorResponse } from "./errors.ts";
import type { Principal } from "./principal.ts";

export interface BucketLimit {
  /** Tokens added per second. */
  rate: number;
  /** Most tokens a bucket holds (the largest burst). */
  burst: number;
}

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date (ms). */
  at: number;
}

/** The outcome of taking tokens from a bucket. */
export interface Take {
  ok: boolean;
  /** Whole tokens left after this take (0 when refused). */
  remaining: number;
  /**
   * Seconds until the bucket could serve this cost (refused), or until it is full again (ok);
   * Infinity when the cost is above the burst (no bucket ever holds that much).
   */
  seconds: number;
}

/**
 * Token buckets by id, bounded in memory: a bucket idle long enough to be full again is the same
 * as no bucket, so it is dropped; past `maxBuckets` the least recently used ones go first (which
 * can only make a limit more lenient for an id not seen for a while, never stricter).
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    readonly maxBuckets: number,
    private readonly now: () => number = performance.now.bind(performance),
  ) {}

  get size(): number {
    return this.buckets.size;
  }

  /** Tokens `id` has now (a full bucket when unknown). */
  peek(id: string, limit: BucketLimit): number {
    const b = this.buckets.get(id);
    return b ? this.refill(b, limit, this.now()) : limit.burst;
  }

  /**
   * Takes `cost` tokens when there are that many, the whole cost: a cost above the burst is never
   * served (refused with seconds = Infinity), so a large batch weighs what its events would.
   */
  take(id: string, cost: number, limit: BucketLimit): Take {
    const b = this.touch(id, limit);
    if (b.tokens >= cost) {
      b.tokens -= cost;
      return { ok: true, remaining: Math.floor(b.tokens), seconds: Math.ceil((limit.burst - b.tokens) / limit.rate) };
    }
    const seconds =
      cost > limit.burst ? Number.POSITIVE_INFINITY : Math.max(1, Math.ceil((cost - b.tokens) / limit.rate));
    return { ok: false, remaining: 0, seconds };
  }

  /**
   * Charges `n` tokens whether or not they are there: the bucket may go into debt (at most
   * `maxDebtSeconds` of refill), which later requests then wait out. For costs known only after
   * the fact (a failed authentication), so concurrent requests that all passed `peek` still pay.
   */
  charge(id: string, n: number, limit: BucketLimit, maxDebtSeconds = 3_600): void {
    const b = this.touch(id, limit);
    b.tokens = Math.max(-limit.rate * maxDebtSeconds, b.tokens - n);
  }

  /** `id`'s bucket, refilled to now and made the most recently used (a new one starts full). */
  private touch(id: string, limit: BucketLimit): Bucket {
    const now = this.now();
    let b = this.buckets.get(id);
    if (b) {
      this.refill(b, limit, now);
      // Most recently used last, so eviction takes the oldest first.
      this.buckets.delete(id);
    } else {
      b = { tokens: limit.burst, at: now };
      if (this.buckets.size >= this.maxBuckets) this.evict(now, limit);
    }
    this.buckets.set(id, b);
    return b;
  }

  private refill(b: Bucket, limit: BucketLimit, now: number): number {
    b.tokens = Math.min(limit.burst, b.tokens + ((now - b.at) / 1000) * limit.rate);
    b.at = now;
    return b.tokens;
  }

  /** Drops full (idle) buckets; if none is, the least recently used quarter. */
  private evict(now: number, limit: BucketLimit): void {
    const fullAfterMs = (limit.burst / limit.rate) * 1000;
    for (const [id, b] of this.buckets) if (now - b.at >= fullAfterMs) this.buckets.delete(id);
    if (this.buckets.size < this.maxBuckets) return;
    let drop = Math.max(1, Math.floor(this.maxBuckets / 4));
    for (const id of this.buckets.keys()) {
      if (drop-- <= 0) break;
      this.buckets.delete(id);
    }
  }
}

export interface RateLimitOptions {
  /** Per key, in events per second (a request costs max(1, its events)); null = no per-key limit. */
  perKey: BucketLimit | null;
  /** Per client IP, in failed authentications per second; null = no per-IP limit. */
  perIp: BucketLimit | null;
  /**
   * Live replicas sharing the configured rates at start (default 1): each enforces rate/replicas
   * and burst/replicas. The returned setReplicas changes it (server/replicas.ts counts them).
   */
  replicas?: number;
  maxBuckets: number;
  rateLimited: Counter<"scope">;
  logger: Logger;
  clientIp: (c: Context) => string | null;
  /** The address as audit lines may show it (CLIENT_IP_STORAGE applies to logs too). */
  logIp: (ip: string) => string | null;
  now?: () => number;
}

/**
 * Whether the request's credential could be a managed key (qrs_…) or a JWT (dotted), which the
 * per-address limit lets through to auth. Shape only, and wider than auth's own tests, so no valid
 * one is refused here; whether it is valid is for auth, and ipGate enforces the outcome.
 */
function mayBeUnguessable(c: Context): boolean {
  const header = c.req.header("authorization");
  const bearer = header && /^bearer /i.test(header) ? header.slice(7).trim() : undefined;
  const credential = bearer || c.req.header("x-api-key");
  if (!credential) return false;
  return credential.startsWith(KEY_PREFIX) || bearer?.includes(".") === true;
}

/** A limit divided among the replicas (each keeps at least 1 token of burst). */
function share(limit: BucketLimit, replicas: number): BucketLimit {
  return { rate: limit.rate / replicas, burst: Math.max(1, Math.floor(limit.burst / replicas)) };
}

/** `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-10): q tokens, refilled in w seconds. */
export function policyField(name: string, limit: BucketLimit): string {
  return `"${name}";q=${limit.burst};w=${Math.max(1, Math.ceil(limit.burst / limit.rate))}`;
}

/** `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10): r tokens left, t seconds to reset. */
export function rateLimitField(name: string, take: Take): string {
  return `"${name}";r=${take.remaining};t=${take.seconds}`;
}

/**
 * The edge's limits: `ipGuard` goes before auth and throttles clients by their failed
 * authentications; `keyGuard` goes after it and refuses a key whose bucket is already empty
 * before the body is read; `chargeEvents` is ingest's hook, called with the event count once the
 * body is parsed; `chargeRequest` charges a request of no events (the stats route).
 */
export function rateLimits(o: RateLimitOptions) {
  // This replica's shares, recomputed only when the live replica count changes (setReplicas).
  let replicas = 0;
  let perKey: BucketLimit | null = null;
  let perIp: BucketLimit | null = null;
  let defaultPolicy = "";
  let ipPolicy = "";
  // Keys' own limits, shared: once per key record and count, not per request.
  let ownShares = new WeakMap<object, BucketLimit>();
  function setReplicas(n: number): void {
    if (n === replicas) return;
    replicas = n;
    perKey = o.perKey ? share(o.perKey, n) : null;
    perIp = o.perIp ? share(o.perIp, n) : null;
    defaultPolicy = perKey ? policyField("key", perKey) : "";
    ipPolicy = perIp ? policyField("ip", perIp) : "";
    ownShares = new WeakMap();
  }
  setReplicas(o.replicas ?? 1);
  const keyBuckets = new TokenBuckets(o.maxBuckets, o.now);
  const ipBuckets = new TokenBuckets(o.maxBuckets, o.now);
  const keyHits = o.rateLimited.labels({ scope: "key" });
  const ipHits = o.rateLimited.labels({ scope: "ip" });
  // The audit line of limit hits: at most one per scope per 10 s, with how many were left out.
  const audit = throttledWarn(o.logger, 10_000);

  // AUTH_DISABLED: every request is the same anonymous principal, so a per-key limit would be a
  // global one; none applies.
  const ownShare = (own: NonNullable<Principal["rateLimit"]>): BucketLimit => {
    let limit = ownShares.get(own);
    if (!limit) {
      limit = share({ rate: own.eventsPerSecond, burst: own.burst }, replicas);
      ownShares.set(own, limit);
    }
    return limit;
  };
  const limitOf = (p: Principal): BucketLimit | null =>
    p.kind === "disabled" ? null : p.rateLimit ? ownShare(p.rateLimit) : perKey;

  const tooMany = (scope: "key" | "ip", policy: string, take: Take, fields: Record<string, unknown>) => {
    (scope === "key" ? keyHits : ipHits).inc();
    audit(scope, { scope, ...fields, retry_after_s: take.seconds }, "rate limit hit; answered 429");
    const what =
      scope === "key" ? "this API key's event rate limit" : "too many failed authentications from this address";
    return new ApiError(429, `${what}; retry after ${take.seconds} s`, {
      headers: {
        "Retry-After": String(take.seconds),
        "RateLimit-Policy": policy,
        RateLimit: rateLimitField(scope, take),
      },
    });
  };

  const ipOf = (c: Context) => {
    const ip = o.clientIp(c);
    return ip === null ? "unknown" : addressKey(ip);
  };

  // At most one burst of debt: the wait after a flood is then at most (burst + 1) / rate, 21 s at
  // the defaults, not an hour. Concurrency is what builds debt (requests that all passed the check
  // before any failed): past the bound, overlapping guesses go unpaid, so a guesser gains what it
  // keeps in flight per wait, while everyone sharing its address (a NAT) waits seconds, not an hour.
  // (burst / rate is the same whatever the replica count, so the configured limit gives it.)
  const ipMaxDebtSeconds = o.perIp ? o.perIp.burst / o.perIp.rate : 0;
  // Requests from an address over its limit that went on to auth (a credential shaped like a
  // managed key or a JWT): ipGate refuses them unless auth proved the credential.
  const overLimit = new WeakMap<Context, string>();

  /**
   * Around auth: an address with no failed-auth token left gets 429, unless its request presents a
   * valid managed key or JWT (too long to guess: refusing them would only let one client behind a
   * shared address, a NAT or a proxy, lock out the others). Each 401 costs its address a token,
   * charged even into debt, so guesses sent concurrently (all checked before any failed) are paid
   * for by a longer wait afterwards. Good requests cost nothing, however many an address has in flight.
   */
  const ipGuard: MiddlewareHandler = async function ipGuard(c, next) {
    if (!perIp) return next();
    // No address has failed lately (no bucket): nothing to check, and the address is resolved
    // only if this request fails (the common case pays for neither).
    let ip: string | null = null;
    let over = false;
    if (ipBuckets.size > 0) {
      ip = ipOf(c);
      if (ipBuckets.peek(ip, perIp) < 1) {
        // Static keys and missing credentials: refused before auth, as the limit's whole point.
        if (!mayBeUnguessable(c)) throw ipTooMany(ip);
        over = true;
        overLimit.set(c, ip);
      }
    }
    // Hono's compose turns a thrown error into onError's answer before it gets back here.
    await next();
    if (c.res.status !== 401) return;
    ipBuckets.charge(ip ?? ipOf(c), 1, perIp, ipMaxDebtSeconds);
    // Over the limit, a failure is the 429 too, so the answer never tells a guessed key from a wrong one.
    if (over) c.res = errorResponse(c, ipTooMany(ip as string));
  };

  const ipTooMany = (ip: string) =>
    tooMany("ip", ipPolicy, ipBuckets.take(ip, 1, perIp as BucketLimit), { client_ip: o.logIp(ip) });

  /** After auth: an address over its limit goes on only with a proven managed key or JWT. */
  const ipGate: MiddlewareHandler = async function ipGate(c, next) {
    const ip = overLimit.get(c);
    if (ip !== undefined) {
      const kind = c.get("principal")?.kind;
      if (kind !== "api_key" && kind !== "jwt") throw ipTooMany(ip);
    }
    return next();
  };

  /** After auth: an empty bucket is refused before the body is read. */
  const keyGuard: MiddlewareHandler = async function keyGuard(c, next) {
    const p = c.get("principal");
    const limit = p ? limitOf(p) : null;
    if (limit && keyBuckets.peek(p.id, limit) < 1) {
      throw tooMany("key", p.rateLimit ? policyField("key", limit) : defaultPolicy, keyBuckets.take(p.id, 1, limit), {
        principal: p.id,
      });
    }
    return next();
  };

  /**
   * A batch larger than this replica's burst: no bucket ever holds it, so waiting cannot help and
   * the answer has no Retry-After (a client that retries 429s as told must not resend it); it
   * names the largest batch instead, in the message and in Max-Batch-Events.
   */
  const tooLarge = (policy: string, limit: BucketLimit, events: number, principal: string) => {
    keyHits.inc();
    audit("key", { scope: "key", principal, events, max_batch_events: limit.burst }, "rate limit hit; answered 429");
    return new ApiError(
      429,
      `a batch of ${events} events is more than this API key may send at once (${limit.burst}); it will never be accepted as it is: split it into batches of at most ${limit.burst} events (Max-Batch-Events)`,
      { headers: { "Max-Batch-Events": String(limit.burst), "RateLimit-Policy": policy } },
    );
  };

  /** Charges max(1, events) to the request's key; over the limit, throws the 429. */
  function charge(c: Context, events: number): void {
    const p = c.get("principal");
    const limit = p ? limitOf(p) : null;
    if (!limit) return;
    const policy = p.rateLimit ? policyField("key", limit) : defaultPolicy;
    if (events > limit.burst) throw tooLarge(policy, limit, events, p.id);
    const take = keyBuckets.take(p.id, Math.max(1, events), limit);
    if (!take.ok) throw tooMany("key", policy, take, { principal: p.id, events });
    c.header("RateLimit-Policy", policy);
    c.header("RateLimit", rateLimitField("key", take));
  }

  /** The stats route's charge: one request, after auth. */
  const chargeRequest: MiddlewareHandler = async function chargeRequest(c, next) {
    charge(c, 1);
    return next();
  };

  return {
    ipGuard,
    ipGate,
    keyGuard,
    chargeEvents: charge,
    chargeRequest,
    /** The live replica count changed: each replica's share of every limit is recomputed. */
    setReplicas,
    /** Buckets held now (for tests of the memory bound). */
    sizes: () => ({ key: keyBuckets.size, ip: ipBuckets.size }),
  };
}

export type RateLimits = ReturnType<typeof rateLimits>;

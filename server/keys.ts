// Managed API keys (the api_keys table, sql/migrations/0005_api_keys.sql; `bun run keys`), held in
// memory by the edge server. Loaded at start and reloaded every API_KEYS_REFRESH_SECONDS, so a
// revocation or an expiry takes effect within one interval without a restart. When Postgres is
// unreachable the last good set keeps serving (fail static): api_keys_refresh_failures_total grows
// and api_keys_last_refresh_success_timestamp_seconds stops. A refresh that gets no answer within
// its deadline also gets a fresh connection (server/background-db.ts): a wedged one would hold the
// last set for the process' life (issue 24). Use is recorded on the key's record
// (a field write per request) and written back as last_used_at with one UPDATE per interval.
import { Counter, Gauge, type Registry } from "prom-client";
import { SCOPES, type Scope } from "../shared/api-keys.ts";
import { type Logger, throttledWarn } from "../shared/logger.ts";
import type { BackgroundDb } from "./background-db.ts";
import { Periodic } from "./periodic.ts";
import type { Principal } from "./principal.ts";

/** A key as the auth middleware checks it; one object per key, reused by every request. */
export interface KeyRecord {
  principal: Principal;
  /** Epoch ms, or null: never. Checked per request, so expiry needs no refresh. */
  expiresAt: number | null;
  revoked: boolean;
  /** Epoch ms of the last request since the last flush (0: none); written back as last_used_at. */
  usedAt: number;
}

interface Row {
  id: string;
  name: string;
  secret_sha256: Buffer;
  scopes: string[];
  qr_prefix: string | null;
  rate_limit_per_second: number | null;
  rate_limit_burst: number | null;
  expires_at: Date | null;
  revoked_at: Date | null;
}

export function keyRecord(row: Row): KeyRecord {
  return {
    principal: {
      kind: "api_key",
      id: row.id,
      name: row.name,
      scopes: new Set(row.scopes.filter((s): s is Scope => (SCOPES as readonly string[]).includes(s))),
      qrPrefix: row.qr_prefix,
      rateLimit:
        row.rate_limit_per_second !== null && row.rate_limit_burst !== null
          ? { eventsPerSecond: row.rate_limit_per_second, burst: row.rate_limit_burst }
          : null,
    },
    expiresAt: row.expires_at ? row.expires_at.getTime() : null,
    revoked: row.revoked_at !== null,
    usedAt: 0,
  };
}

export interface KeyStoreOptions {
  /**
   * Its own small pool (through pgbouncer), so a busy stats route cannot starve the refresh; a
   * refresh past its deadline counts as failed (the last good set stays) and gets a fresh connection.
   */
  db: BackgroundDb;
  refreshSeconds: number;
  logger: Logger;
  registry: Registry;
}

export class KeyStore {
  #keys = new Map<string, KeyRecord>();
  #loaded = false;
  readonly #periodic: Periodic;
  readonly #o: KeyStoreOptions;
  readonly #warn: ReturnType<typeof throttledWarn>;
  readonly #metrics;

  constructor(o: KeyStoreOptions) {
    this.#o = o;
    this.#periodic = new Periodic(() => this.#refresh(), o.refreshSeconds * 1000);
    this.#warn = throttledWarn(o.logger, 60_000);
    const registers = [o.registry];
    this.#metrics = {
      loaded: new Gauge({
        name: "api_keys_loaded",
        help: "Managed API keys in the edge's current set that are neither revoked nor expired",
        registers,
        collect: () => {
          const now = Date.now();
          let n = 0;
          for (const k of this.#keys.values()) if (!k.revoked && (k.expiresAt === null || k.expiresAt > now)) n++;
          this.#metrics.loaded.set(n);
        },
      }),
      lastSuccess: new Gauge({
        name: "api_keys_last_refresh_success_timestamp_seconds",
        help: "When the managed API keys were last loaded from Postgres (0: never; the server then trusts only static keys and JWTs)",
        registers,
      }),
      failures: new Counter({
        name: "api_keys_refresh_failures_total",
        help: "Reloads of the managed API keys that failed; the last good set kept serving (fail static)",
        registers,
      }),
      lastUsedFailures: new Counter({
        name: "api_keys_last_used_write_failures_total",
        help: "Write-backs of the keys' last_used_at that failed (the use is kept for the next); reloads go on regardless",
        registers,
      }),
    };
    this.#metrics.lastSuccess.set(0);
    this.#metrics.failures.inc(0);
    this.#metrics.lastUsedFailures.inc(0);
  }

  /** Whether a set was ever loaded: until then no managed key is accepted. */
  get loaded(): boolean {
    return this.#loaded;
  }

  /** The key whose secret has this SHA-256 (hex), whatever its state. */
  lookup(digestHex: string): KeyRecord | undefined {
    return this.#keys.get(digestHex);
  }

  /** Loads once (a failure is counted and logged, not thrown), then every refreshSeconds. */
  start(): Promise<void> {
    return this.#periodic.start();
  }

  /** Reloads the set, then writes back last use. Never overlaps itself; never throws. */
  refresh(): Promise<void> {
    return this.#periodic.run();
  }

  async stop(): Promise<void> {
    await this.#periodic.stop();
    await this.#flush().catch((error) => this.#o.logger.warn({ err: error }, "could not record API keys' last use"));
  }

  /**
   * The reload comes first and does not depend on the write-back: a revocation must take effect
   * even when last_used_at cannot be written (a role without that UPDATE, a lock, a timeout).
   */
  async #refresh(): Promise<void> {
    // A failed reload (Postgres unreachable) is logged; the write-back would only fail the same way.
    if (!(await this.#reload())) return;
    try {
      await this.#flush();
    } catch (error) {
      this.#metrics.lastUsedFailures.inc();
      this.#warn(
        "last-used",
        { err: error },
        "could not record API keys' last use (last_used_at); kept for the next refresh, revocations still apply",
      );
    }
  }

  /** Whether the set was reloaded; a failure is counted and logged, never thrown. */
  async #reload(): Promise<boolean> {
    try {
      const rows = await this.#o.db.query(
        "api_keys query",
        // scopes as JSON: the background client converts no arrays (server/background-db.ts).
        (sql) => sql<Row[]>`
          select id, name, secret_sha256, array_to_json(scopes) as scopes, qr_prefix, rate_limit_per_second,
                 rate_limit_burst, expires_at, revoked_at
          from api_keys`,
      );
      const next = new Map<string, KeyRecord>();
      for (const row of rows) {
        const record = keyRecord(row);
        // Use not yet flushed stays with the key across a reload.
        record.usedAt = this.#keys.get(row.secret_sha256.toString("hex"))?.usedAt ?? 0;
        next.set(row.secret_sha256.toString("hex"), record);
      }
      this.#keys = next;
      this.#loaded = true;
      this.#metrics.lastSuccess.set(Date.now() / 1000);
      return true;
    } catch (error) {
      this.#metrics.failures.inc();
      this.#warn(
        "refresh",
        { err: error, loaded: this.#loaded, keys: this.#keys.size },
        this.#loaded
          ? "could not reload the API keys; serving the last good set (fail static)"
          : "could not load the API keys; managed keys are refused until they load",
      );
      return false;
    }
  }

  /** One UPDATE for every key used since the last flush; on failure their use is kept for the next. */
  async #flush(): Promise<void> {
    const used: KeyRecord[] = [];
    for (const k of this.#keys.values()) if (k.usedAt > 0) used.push(k);
    if (used.length === 0) return;
    // As JSON: the background client converts no array parameters (server/background-db.ts).
    const uses = used.map((k) => ({ id: k.principal.id, t: new Date(k.usedAt).toISOString() }));
    const marks = used.map((k) => k.usedAt);
    for (const k of used) k.usedAt = 0;
    try {
      await this.#o.db.query(
        "api_keys query",
        (sql) => sql`
          update api_keys k set last_used_at = greatest(k.last_used_at, u.t)
          from jsonb_to_recordset(${sql.json(uses)}) as u(id text, t timestamptz)
          where k.id = u.id`,
      );
    } catch (error) {
      used.forEach((k, i) => {
        k.usedAt = Math.max(k.usedAt, marks[i] as number);
      });
      throw error;
    }
  }
}

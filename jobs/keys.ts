// Managed API keys (the api_keys table; the edge servers reload it every API_KEYS_REFRESH_SECONDS).
//   bun run keys create --name NAME [--scopes scans:write,stats:read] [--qr-prefix P]
//                       [--rate EVENTS_PER_S --burst N] [--expires-in 90d]
//   bun run keys list [--all]                 keys without their secrets (--all: revoked and expired too)
//   bun run keys revoke <id>                  refused from the next refresh on
//   bun run keys rotate <id> [--overlap 24h] [--expires-in 90d]
//                                             a successor with the same settings and lifetime; the
//                                             old key keeps working until the overlap ends
//   bun run keys static                       a key for API_KEY_SHA256 / API_KEYS_FILE and its digest
//                                             (no database)
// `create` and `rotate` print the new secret once, on stdout; only its SHA-256 is stored. Each
// change writes one audit line (JSON, no secret) on stderr. A tenant (--qr-prefix) is one or more
// segments each ending in ":" (shared/api-keys.ts) and may not contain or extend another
// tenant's.
// Configuration: DATABASE_URL (docs/operations.md, "keys configuration").
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import * as v from "valibot";
import {
  SCOPES,
  SHOWN_PREFIX_LENGTH,
  type Scope,
  TENANT_PREFIX_MAX_LENGTH,
  isTenantPrefix,
  newSecret,
  sha256,
} from "../shared/api-keys.ts";
import { type CliSpec, UsageError, parseCommand, runCli } from "../shared/cli.ts";
import { loadConfig, str } from "../shared/config.ts";
import { SQLSTATE, hasSqlState } from "../shared/db-errors.ts";
import { localStack } from "../shared/local-stack.ts";
import { type Logger, createLogger } from "../shared/logger.ts";

/** `bun run keys`'s configuration (docs/operations.md). */
export const KeysConfigSchema = v.object({
  DATABASE_URL: str(localStack().databaseUrl),
  /** Who ran the command, for the audit line (the login shell sets it). */
  USER: v.optional(v.string()),
});

const rateOptions = {
  rate: {
    type: "string",
    value: "EVENTS_PER_S",
    description: "this key's rate limit (with --burst); default: the server's",
  },
  burst: { type: "string", value: "N", description: "this key's burst (with --rate)" },
} as const;

export const KEYS_CLI: CliSpec = {
  program: "bun run keys",
  description:
    "Managed API keys (the api_keys table). create and rotate print the new secret once, on stdout; each change writes one audit line on stderr.",
  commands: {
    create: {
      args: "",
      description: "a new key",
      options: {
        name: { type: "string", value: "NAME", description: "the client or tenant (required)" },
        scopes: { type: "string", value: SCOPES.join(","), description: "default scans:write" },
        "qr-prefix": { type: "string", value: "TENANT:", description: "the tenant: QR ids it may touch start with it" },
        ...rateOptions,
        "expires-in": { type: "string", value: "90d", description: "lifetime (s, m, h or d); default: none" },
      },
    },
    list: {
      args: "",
      description: "keys without their secrets",
      options: { all: { type: "boolean", description: "revoked and expired ones too" } },
    },
    revoke: { args: "<id>", description: "refused by the servers from their next refresh on", options: {} },
    rotate: {
      args: "<id>",
      description: "a successor with the same settings and lifetime; the old key works until the overlap ends",
      options: {
        overlap: { type: "string", value: "24h", description: "how long the old key keeps working (default 24h)" },
        "expires-in": { type: "string", value: "90d", description: "the successor's lifetime" },
      },
    },
    static: {
      args: "",
      description: "a key for API_KEY_SHA256 / API_KEYS_FILE and its digest (no database)",
      options: {},
    },
  },
};

/** A well-formed command the table's state refuses (exit 1, no usage text). */
export class RefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RefusedError";
  }
}

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3_600, d: 86_400 };

/** "90d", "24h", "30m", "0s" → milliseconds. */
export function duration(text: string, name: string): number {
  const m = /^(\d+)([smhd])$/.exec(text);
  if (!m) throw new UsageError(`${name} ${text}: a number and s, m, h or d (e.g. 24h)`);
  return Number(m[1]) * (UNITS[m[2] as string] as number) * 1000;
}

function positive(text: string | undefined, name: string): number | null {
  if (text === undefined) return null;
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 2 ** 31 - 1)
    throw new UsageError(`${name} ${text}: a positive integer`);
  return Number(text);
}

const newId = () => `key_${randomBytes(6).toString("hex")}`;

interface KeyRow {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  qr_prefix: string | null;
  rate_limit_per_second: number | null;
  rate_limit_burst: number | null;
  rotated_from: string | null;
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
}

const COLUMNS = `id, name, prefix, scopes, qr_prefix, rate_limit_per_second, rate_limit_burst, rotated_from,
  created_at, expires_at, revoked_at, last_used_at`;

function state(k: KeyRow, now = Date.now()): string {
  if (k.revoked_at) return "revoked";
  if (k.expires_at && k.expires_at.getTime() <= now) return "expired";
  return k.expires_at ? `active until ${k.expires_at.toISOString()}` : "active";
}

const time = (d: Date | null) => (d ? d.toISOString().replace(/\.\d+Z$/, "Z") : "-");

export interface KeysIo {
  out: (line: string) => void;
  /** The audit trail: one JSON line per change. */
  audit: Logger;
  /** Who runs the command, in the audit line. */
  operator?: string | undefined;
}

/** Runs one command; returns the exit code. */
export async function keys(argv: string[], sql: postgres.Sql, io: KeysIo): Promise<number> {
  const { command, values, positionals } = parseCommand(KEYS_CLI, argv);
  const option = (name: string) => values[name] as string | undefined;
  switch (command) {
    case "create": {
      const name = option("name");
      if (!name) throw new UsageError("create needs --name (the client or tenant)");
      const scopes = (option("scopes") ?? "scans:write").split(",").filter(Boolean);
      const bad = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
      if (bad.length || scopes.length === 0)
        throw new UsageError(`--scopes: ${bad.join(",") || "empty"}; known: ${SCOPES.join(", ")}`);
      const qrPrefix = option("qr-prefix") ?? null;
      if (qrPrefix !== null && !isTenantPrefix(qrPrefix)) {
        throw new UsageError(
          `--qr-prefix ${JSON.stringify(qrPrefix)}: a tenant is one or more segments of A-Z a-z 0-9 . _ - each ending in ":" (e.g. acme: or acme:eu:), at most ${TENANT_PREFIX_MAX_LENGTH} characters, so acme: can never match acme2:… or acme-eu…`,
        );
      }
      const rate = positive(option("rate"), "--rate");
      const burst = positive(option("burst"), "--burst");
      if ((rate === null) !== (burst === null)) throw new UsageError("--rate and --burst go together");
      const expiresIn = option("expires-in");
      const expiresAt = expiresIn ? new Date(Date.now() + duration(expiresIn, "--expires-in")) : null;
      const secret = newSecret();
      const k = await sql.begin(async (tx) => {
        if (qrPrefix !== null) await refuseOverlap(tx, qrPrefix);
        const [row] = await tx<KeyRow[]>`
          insert into api_keys (id, name, prefix, secret_sha256, scopes, qr_prefix, rate_limit_per_second,
                                rate_limit_burst, expires_at)
          values (${newId()}, ${name}, ${secret.slice(0, SHOWN_PREFIX_LENGTH)}, ${sha256(secret)}, ${scopes},
                  ${qrPrefix}, ${rate}, ${burst}, ${expiresAt})
          returning ${tx.unsafe(COLUMNS)}`;
        return row as KeyRow;
      });
      io.audit.info(auditFields("create", k, io), "API key created");
      io.out(
        `created ${k.id} (${k.name}): scopes ${k.scopes.join(",")}${k.qr_prefix ? `, QR ids ${k.qr_prefix}…` : ""}`,
      );
      io.out("the secret, shown only now; store it where the client keeps secrets:");
      io.out(secret);
      return 0;
    }
    case "list": {
      const all = values.all === true;
      const rows = await sql<KeyRow[]>`
        select ${sql.unsafe(COLUMNS)} from api_keys
        ${all ? sql`` : sql`where revoked_at is null and (expires_at is null or expires_at > now())`}
        order by created_at, id`;
      io.out(["id", "name", "prefix", "scopes", "qr_prefix", "rate/burst", "created", "last_used", "state"].join("\t"));
      for (const k of rows) {
        io.out(
          [
            k.id,
            k.name,
            k.prefix,
            k.scopes.join(","),
            k.qr_prefix ?? "-",
            k.rate_limit_per_second ? `${k.rate_limit_per_second}/${k.rate_limit_burst}` : "default",
            time(k.created_at),
            time(k.last_used_at),
            state(k),
          ].join("\t"),
        );
      }
      return 0;
    }
    case "revoke": {
      const id = positionals[0];
      if (!id) throw new UsageError("revoke needs a key id (see bun run keys list)");
      const [row] = await sql<KeyRow[]>`
        update api_keys set revoked_at = coalesce(revoked_at, now()) where id = ${id}
        returning ${sql.unsafe(COLUMNS)}`;
      if (!row) {
        io.out(`no key ${id}`);
        return 1;
      }
      io.audit.info(auditFields("revoke", row, io), "API key revoked");
      io.out(
        `revoked ${row.id} (${row.name}) at ${time(row.revoked_at)}; the servers refuse it from their next refresh`,
      );
      return 0;
    }
    case "rotate": {
      const id = positionals[0];
      if (!id) throw new UsageError("rotate needs a key id (see bun run keys list)");
      const overlapMs = duration(option("overlap") ?? "24h", "--overlap");
      const expiresIn = option("expires-in");
      const lifetimeMs = expiresIn === undefined ? undefined : duration(expiresIn, "--expires-in");
      const secret = newSecret();
      const result = await sql.begin(async (tx) => {
        const [current] = await tx<KeyRow[]>`
          select ${tx.unsafe(COLUMNS)} from api_keys
          where id = ${id} and revoked_at is null and (expires_at is null or expires_at > now())
          for update`;
        if (!current) return null;
        // The successor keeps the expiry policy: a 90-day key's successor is a 90-day key from now
        // (its lifetime as created), a permanent key's is permanent; --expires-in changes it.
        const lifetime =
          lifetimeMs ?? (current.expires_at ? current.expires_at.getTime() - current.created_at.getTime() : null);
        const expiresAt = lifetime === null ? null : new Date(Date.now() + lifetime);
        const [old] = await tx<KeyRow[]>`
          update api_keys
          set expires_at = least(coalesce(expires_at, 'infinity'), now() + ${`${overlapMs} milliseconds`}::interval)
          where id = ${id}
          returning ${tx.unsafe(COLUMNS)}`;
        const [successor] = await tx<KeyRow[]>`
          insert into api_keys (id, name, prefix, secret_sha256, scopes, qr_prefix, rate_limit_per_second,
                                rate_limit_burst, rotated_from, expires_at)
          values (${newId()}, ${current.name}, ${secret.slice(0, SHOWN_PREFIX_LENGTH)}, ${sha256(secret)},
                  ${current.scopes}, ${current.qr_prefix}, ${current.rate_limit_per_second},
                  ${current.rate_limit_burst}, ${current.id}, ${expiresAt})
          returning ${tx.unsafe(COLUMNS)}`;
        return { old: old as KeyRow, successor: successor as KeyRow };
      });
      if (!result) {
        io.out(`no active key ${id} (revoked, expired or unknown): create a new one instead`);
        return 1;
      }
      const { old, successor } = result;
      io.audit.info(
        { ...auditFields("rotate", successor, io), old_key_id: old.id, old_expires_at: old.expires_at?.toISOString() },
        "API key rotated",
      );
      io.out(
        `rotated ${old.id} → ${successor.id} (${successor.name}); ${old.id} works until ${time(old.expires_at)}; ${successor.id} ${successor.expires_at ? `expires ${time(successor.expires_at)}` : "does not expire"}`,
      );
      io.out("the new secret, shown only now:");
      io.out(secret);
      return 0;
    }
    case "static": {
      // No database: the operator puts the digest in API_KEY_SHA256 or API_KEYS_FILE and restarts.
      const secret = newSecret();
      io.out("a static key, shown only now; give it to the client:");
      io.out(secret);
      io.out("its SHA-256, for API_KEY_SHA256 (comma-separated) or one line of API_KEYS_FILE:");
      io.out(sha256(secret).toString("hex"));
      return 0;
    }
    default:
      throw new UsageError(command ? `unknown command ${command}` : "a command is needed");
  }
}

/**
 * Refuses a tenant that contains or extends a live key's other tenant (`acme:` and `acme:eu:`):
 * one would read the other's QR ids. The same tenant again (another key of it) is fine. Creates
 * are serialised by a transaction-scoped advisory lock, so two cannot race past the check.
 */
async function refuseOverlap(tx: postgres.TransactionSql, qrPrefix: string): Promise<void> {
  await tx`select pg_advisory_xact_lock(${TENANT_LOCK_KEY})`;
  const clashes = await tx<{ id: string; name: string; qr_prefix: string }[]>`
    select id, name, qr_prefix from api_keys
    where revoked_at is null and (expires_at is null or expires_at > now())
      and qr_prefix <> ${qrPrefix}
      and (starts_with(${qrPrefix}, qr_prefix) or starts_with(qr_prefix, ${qrPrefix}))
    order by id`;
  if (clashes.length) {
    const list = clashes.map((k) => `${k.id} (${k.name}, ${k.qr_prefix})`).join(", ");
    throw new RefusedError(
      `--qr-prefix ${qrPrefix}: overlaps another tenant's keys (${list}): one would read the other's QR ids; choose a prefix that neither starts nor is the start of theirs`,
    );
  }
}

const TENANT_LOCK_KEY = 0x5153_5450; // arbitrary, fixed: "QSTP"

function auditFields(action: string, k: KeyRow, io: KeysIo): Record<string, unknown> {
  return {
    audit: "api_key",
    action,
    key_id: k.id,
    name: k.name,
    key_prefix: k.prefix,
    scopes: k.scopes as Scope[],
    qr_prefix: k.qr_prefix,
    expires_at: k.expires_at?.toISOString() ?? null,
    operator: io.operator ?? null,
  };
}

if (import.meta.main) {
  await runCli(KEYS_CLI, async (argv) => {
    const config = loadConfig(KeysConfigSchema);
    // The audit lines go to stderr, so stdout holds only what the operator asked for (and the secret).
    const sql = postgres(config.DATABASE_URL, { prepare: false, max: 1, connect_timeout: 10, onnotice: () => {} });
    const audit = createLogger("keys", "info", { write: (line: string) => process.stderr.write(line) });
    try {
      return await keys(argv, sql, { out: (line) => console.log(line), audit, operator: config.USER });
    } catch (error) {
      if (hasSqlState(error, SQLSTATE.undefined_table))
        throw new RefusedError(`${(error as Error).message} (run bun run migrate on this database)`);
      throw error;
    } finally {
      await sql.end({ timeout: 2 });
    }
  });
}

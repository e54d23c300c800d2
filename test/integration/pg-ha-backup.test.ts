// pgBackRest against the Postgres HA cluster (PG_HA=1), on a private cluster
// (test/helpers/pg-ha-cluster.ts): the stanza has both members (pg1, pg2, backup-standby=y) and
// WAL is archived by the leader. `bun run backup` copies the files from the synchronous standby
// (pgBackRest's log says it waited for the standby's replay and backed up from it), and
// `bun run restore-drill` restores that backup plus the archived WAL and verifies it against
// checksums captured on the leader.
import { expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { backrestPaths } from "../../tools/backup/pgbackrest.ts";
import { runToEnd } from "../../tools/harness.ts";
import { startPgHaCluster } from "../helpers/pg-ha-cluster.ts";
import { once } from "../helpers/pg-ha-cluster.ts";

test("a backup taken from the standby, and a restore drill of it verified", async () => {
  const t0 = performance.now();
  const cluster = await startPgHaCluster();
  const leader = await cluster.leader();
  const standby = cluster.stack.patroniMembers.map((m) => m.name).find((n) => n !== leader) as string;
  await cluster.waitSyncStandby(standby);
  await once(cluster.db.directUrl, async (sql) => {
    await sql`select ensure_scan_event_partition_days(array[current_date - 1])`;
    await sql`
      insert into scan_events (event_id, scanned_at, qr_id, received_at, schema_version, kafka_partition, kafka_offset)
      select gen_random_uuid(), current_date - 1 + make_interval(mins => i % 1440), 'QR-' || (i % 7), now(), 1, 0, i
      from generate_series(0, 499) i`;
  });
  const env = { ...cluster.env, BACKUP_DATABASE: cluster.db.name };

  const backup = await runToEnd({ cmd: ["bun", "tools/backup.ts"], env, timeoutMs: 120_000 });
  expect(backup.code, `${backup.stdout}${backup.stderr}`).toBe(0);
  const logDir = backrestPaths(cluster.stack).log;
  const log = readdirSync(logDir)
    .filter((f) => f.includes("backup"))
    .map((f) => readFileSync(join(logDir, f), "utf8"))
    .join("\n");
  const fromStandby = log.split("\n").filter((l) => /replay on the standby|backup-standby/.test(l));

  const drill = await runToEnd({ cmd: ["bun", "tools/restore-drill.ts"], env, timeoutMs: 180_000 });
  const took = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(
    `backup: ${backup.stdout.trim()}\nfrom the standby (${standby}): ${fromStandby.map((l) => l.slice(0, 140)).join(" | ")}\n` +
      `drill: ${drill.stdout
        .split("\n")
        .filter((l) => l.startsWith("restore-drill:"))
        .join(" | ")}\ntest took ${took} s`,
  );
  // pgBackRest waited for the standby to replay the backup's start and read the files there (its
  // options echo backup-standby from the config whatever it did: this line is the deed).
  expect(log).toContain("replay on the standby reached");
  expect(drill.code, `${drill.stdout}${drill.stderr}`).toBe(0);
  expect(drill.stdout).toContain("restore-drill: verified: 500 rows");
}, 240_000);

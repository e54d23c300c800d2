// Dead letters: list them, show one, and replay them into the scans topic after a fix.
//   bun run dlq list [--all] [--limit 20]      pending dead letters (--all: replayed ones too), newest first
//   bun run dlq show <id>                       one dead letter with its payload
//   bun run dlq replay <id>[,<id>…] | --all [--dry-run] [--force]
//
// A replay first decodes each payload with the worker's own decoder (shared/scan-events.ts): one that
// would be dead-lettered again is skipped and named (exit 1), unless --force. The others are
// produced to SCANS_TOPIC with their original key, acks=all; only once Kafka has them is
// `replayed_at` set. Replaying is idempotent: an event already stored is a no-op for the sink
// (its event_id key), and a replayed dead letter is not offered again.
// Configuration: the worker's (KAFKA_BROKERS, SCANS_TOPIC, DATABASE_URL, …; docs/operations.md).
import { KafkaProducer } from "bun-rdkafka";
import postgres from "postgres";
import { type CliSpec, UsageError, parseCommand, runCli } from "../shared/cli.ts";
import { decode, isPoison } from "../shared/scan-events.ts";
import { loadOpsConfig } from "./config.ts";

interface DeadLetter {
  id: string;
  source_topic: string;
  source_partition: number;
  source_offset: string;
  key: Buffer | null;
  payload: Buffer | null;
  error: string;
  failed_at: Date;
  replayed_at: Date | null;
}

export const DLQ_CLI: CliSpec = {
  program: "bun run dlq",
  description: "Dead letters: list them, show one, replay them into the scans topic after a fix.",
  commands: {
    list: {
      args: "",
      description: "pending dead letters, newest first",
      options: {
        all: { type: "boolean", description: "replayed ones too" },
        limit: { type: "string", value: "N", description: "at most N (default 20)" },
      },
    },
    show: { args: "<id>", description: "one dead letter with its payload, and whether it is replayable", options: {} },
    replay: {
      args: "<id>[,<id>…]",
      description: "to SCANS_TOPIC, acks=all; exit 1 if one is still not storable (skipped)",
      options: {
        all: { type: "boolean", description: "every pending dead letter" },
        "dry-run": { type: "boolean", description: "say what would be replayed, change nothing" },
        force: { type: "boolean", description: "replay even the ones the worker would dead-letter again" },
      },
    },
  },
};

const ids = (arg: string | undefined) => {
  const list = (arg ?? "").split(",").filter(Boolean);
  if (list.length === 0 || !list.every((x) => /^\d+$/.test(x)))
    throw new UsageError(`ids must be numbers: "${arg ?? ""}"`);
  return list;
};

const where = (d: DeadLetter) => `${d.source_topic}/${d.source_partition}@${d.source_offset}`;
const oneLine = (s: string, max: number) => {
  const flat = s.replaceAll(/\s+/g, " ");
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
};

/** Whether the worker, as deployed now, would store this payload: null, or why not. */
function stillPoison(d: DeadLetter, topic: string): string | null {
  const decoded = decode({
    topic,
    partition: 0,
    offset: 0,
    key: d.key,
    value: d.payload,
    headers: null,
    timestamp: Date.now(),
  });
  return isPoison(decoded) ? decoded.error : null;
}

export async function dlq(argv: string[], out: (line: string) => void = console.log): Promise<number> {
  const { command, values, positionals: args } = parseCommand(DLQ_CLI, argv);
  const config = loadOpsConfig();
  const sql = postgres(config.DATABASE_URL, { prepare: false, max: 1, onnotice: () => {} });
  try {
    if (command === "list") {
      const all = values.all === true;
      const limit = Number(values.limit ?? 20);
      if (!Number.isInteger(limit) || limit < 1) throw new UsageError("--limit must be a positive integer");
      const rows = await sql<DeadLetter[]>`
        select id, source_topic, source_partition, source_offset, error, failed_at, replayed_at
        from dead_letters ${all ? sql`` : sql`where replayed_at is null`}
        order by id desc limit ${limit}`;
      const [count] = await sql<{ pending: number }[]>`
        select count(*)::int as pending from dead_letters where replayed_at is null`;
      const pending = count?.pending ?? 0;
      out(`${pending} pending dead letter(s)${rows.length ? "; newest first:" : ""}`);
      for (const d of rows) {
        const state = d.replayed_at ? `replayed ${d.replayed_at.toISOString()}` : "pending";
        out(`${d.id}\t${where(d)}\t${d.failed_at.toISOString()}\t${state}\t${oneLine(d.error, 100)}`);
      }
      return 0;
    }
    if (command === "show") {
      const [d] = await sql<DeadLetter[]>`select * from dead_letters where id = ${ids(args[0])[0] as string}`;
      if (!d) {
        out(`no dead letter ${args[0]}`);
        return 1;
      }
      out(`id          ${d.id}`);
      out(`source      ${where(d)}`);
      out(`failed_at   ${d.failed_at.toISOString()}`);
      out(`replayed_at ${d.replayed_at?.toISOString() ?? "-"}`);
      out(`error       ${d.error}`);
      out(`key         ${d.key ? d.key.toString("utf8") : "-"}`);
      out(`payload     ${d.payload ? d.payload.toString("utf8") : "-"}`);
      const problem = stillPoison(d, config.SCANS_TOPIC);
      out(`replayable  ${problem ? `no: ${problem}` : "yes (the worker would store it now)"}`);
      return 0;
    }
    if (command === "replay") {
      const dryRun = values["dry-run"] === true;
      const force = values.force === true;
      const all = values.all === true;
      const selected = all
        ? await sql<DeadLetter[]>`select * from dead_letters where replayed_at is null order by id`
        : await sql<
            DeadLetter[]
          >`select * from dead_letters where id in ${sql(ids(args[0]))} and replayed_at is null order by id`;
      const ready: DeadLetter[] = [];
      const skipped: DeadLetter[] = [];
      for (const d of selected) {
        const problem = stillPoison(d, config.SCANS_TOPIC);
        if (problem && !force) {
          skipped.push(d);
          out(`skip ${d.id} (${where(d)}): still not storable: ${oneLine(problem, 160)}`);
        } else ready.push(d);
      }
      if (dryRun) {
        out(`dry run: ${ready.length} would be replayed to ${config.SCANS_TOPIC}, ${skipped.length} skipped`);
        return skipped.length ? 1 : 0;
      }
      if (ready.length) {
        const producer = new KafkaProducer({ config: { ...config.kafka, ...config.producer } });
        try {
          await producer.waitUntilConnected(10_000);
          await producer.send(
            ready.map((d) => ({
              topic: config.SCANS_TOPIC,
              key: d.key ? new Uint8Array(d.key) : null,
              value: d.payload ? new Uint8Array(d.payload) : "",
              headers: { dlq_replayed_from: d.id },
            })),
          );
        } finally {
          await producer.close(5_000);
        }
        await sql`update dead_letters set replayed_at = now() where id in ${sql(ready.map((d) => d.id))}`;
      }
      out(`replayed ${ready.length} to ${config.SCANS_TOPIC}; ${skipped.length} skipped`);
      return skipped.length ? 1 : 0;
    }
    throw new UsageError(command ? `unknown command "${command}"` : "no command");
  } finally {
    await sql.end({ timeout: 2 });
  }
}

if (import.meta.main) await runCli(DLQ_CLI, (argv) => dlq(argv));

// What the pipeline stands on: Postgres connections against max_connections and pgbouncer's pools
// (Debian's prometheus-postgres-exporter, and Debian's prometheus-pgbouncer-exporter through
// monitoring/pgbouncer-exporter/run.py, in the local stack and in compose alike), and the broker's
// health from the JMX exporter javaagent (monitoring/jmx-exporter/kafka.yml).
import { newDashboard, rate, row, stat, timeseries } from "./panels.ts";

/** pgbouncer's own admin database is not a pool the product uses. */
const POOLS = 'database!="pgbouncer"';

export function databaseDashboard() {
  return newDashboard(
    "qrscan-database",
    "qrscan-ingest / Database",
    "Postgres connections against max_connections, and pgbouncer's pools: clients waiting for a server connection and how long the oldest has waited.",
  )
    .withRow(row("Postgres"))
    .withPanel(
      stat({
        title: "Connections used (alert 80%)",
        description:
          "Backends connected to any database / max_connections (PostgresConnectionsNearMax pages above 80% for 5 min).",
        unit: "percentunit",
        thresholdLines: [0.6, 0.8],
        queries: [
          {
            expr: "sum(pg_stat_database_numbackends) / max(pg_settings_max_connections)",
            legend: "connections used",
          },
        ],
      }),
    )
    .withPanel(
      timeseries({
        title: "Postgres connections vs max_connections",
        description: "Backends per database (stacked) against the server's max_connections.",
        unit: "short",
        width: 18,
        queries: [
          { expr: "sum by (datname) (pg_stat_database_numbackends)", legend: "{{datname}}" },
          { expr: "max(pg_settings_max_connections)", legend: "max_connections" },
        ],
      }),
    )
    .withRow(row("pgbouncer"))
    .withPanel(
      stat({
        title: "Clients waiting",
        description:
          "Clients queued in pgbouncer for a server connection (PgbouncerClientsWaiting pages while any wait, for 2 min).",
        unit: "short",
        thresholdLines: [1],
        queries: [{ expr: `sum(pgbouncer_waiting_clients{${POOLS}})`, legend: "waiting" }],
      }),
    )
    .withPanel(
      timeseries({
        title: "Clients waiting per pool",
        description:
          "pgbouncer SHOW POOLS cl_waiting: the pool (default_pool_size) is exhausted while this is above 0.",
        unit: "short",
        width: 9,
        queries: [{ expr: `sum by (database) (pgbouncer_waiting_clients{${POOLS}})`, legend: "{{database}}" }],
      }),
    )
    .withPanel(
      timeseries({
        title: "Longest client wait per pool",
        description: "How long the oldest waiting client has waited for a server connection (SHOW POOLS maxwait).",
        unit: "s",
        width: 9,
        queries: [{ expr: `max by (database) (pgbouncer_max_wait_seconds{${POOLS}})`, legend: "{{database}}" }],
      }),
    )
    .withPanel(
      timeseries({
        title: "Pool use: active clients and servers vs pool size",
        description:
          "Client connections in use, server connections in use (sv_active), against each pool's size (default_pool_size).",
        unit: "short",
        queries: [
          { expr: `sum by (database) (pgbouncer_active_clients{${POOLS}})`, legend: "active clients {{database}}" },
          { expr: `sum by (database) (pgbouncer_active_servers{${POOLS}})`, legend: "active servers {{database}}" },
          { expr: `max by (database) (pgbouncer_pool_size{${POOLS}})`, legend: "pool size {{database}}" },
        ],
      }),
    )
    .withPanel(
      timeseries({
        title: "pgbouncer queries/s",
        description: "Queries pgbouncer passed to Postgres (SHOW STATS total_query_count), per database.",
        unit: "ops",
        queries: [
          { expr: `sum by (database) (${rate(`pgbouncer_requests_total{${POOLS}}`)})`, legend: "{{database}}" },
        ],
      }),
    );
}

export function brokerDashboard() {
  return newDashboard(
    "qrscan-broker",
    "qrscan-ingest / Broker",
    "Kafka broker health from the JMX exporter: under-replicated and offline partitions, controller and broker state, messages and bytes in and out, requests.",
  )
    .withRow(row("Health"))
    .withPanel(
      stat({
        title: "Under-replicated partitions",
        description:
          "Partitions led by the broker with fewer in-sync replicas than replicas (KafkaUnderReplicatedPartitions pages above 0 for 5 min).",
        unit: "short",
        thresholdLines: [1],
        queries: [{ expr: "sum(kafka_server_replicamanager_underreplicatedpartitions)", legend: "under-replicated" }],
      }),
    )
    .withPanel(
      stat({
        title: "Offline partitions",
        description: "Partitions without a leader (KafkaOfflinePartitions pages above 0 for 1 min).",
        unit: "short",
        thresholdLines: [1],
        queries: [{ expr: "sum(kafka_controller_kafkacontroller_offlinepartitionscount)", legend: "offline" }],
      }),
    )
    .withPanel(
      stat({
        title: "Active controllers",
        description: "Brokers acting as the active controller: exactly 1 in a healthy cluster.",
        unit: "short",
        queries: [
          { expr: "sum(kafka_controller_kafkacontroller_activecontrollercount)", legend: "active controllers" },
        ],
      }),
    )
    .withPanel(
      stat({
        title: "Broker targets up",
        description: "Broker JMX exporters Prometheus scrapes successfully (TargetDown pages after 2 min down).",
        unit: "short",
        queries: [{ expr: 'sum(up{job="kafka"})', legend: "up" }],
      }),
    )
    .withPanel(
      timeseries({
        title: "Partition health over time",
        description:
          "Under-replicated, offline and under-min-ISR partitions, and the broker's state (3 = running), over time.",
        unit: "short",
        queries: [
          { expr: "sum(kafka_server_replicamanager_underreplicatedpartitions)", legend: "under-replicated" },
          { expr: "sum(kafka_controller_kafkacontroller_offlinepartitionscount)", legend: "offline" },
          { expr: "sum(kafka_server_replicamanager_underminisrpartitioncount)", legend: "under min ISR" },
          { expr: "max by (instance) (kafka_server_kafkaserver_brokerstate)", legend: "broker state {{instance}}" },
        ],
      }),
    )
    .withPanel(
      timeseries({
        title: "Partitions and leaders",
        description: "Partitions hosted and led by each broker.",
        unit: "short",
        queries: [
          { expr: "sum by (instance) (kafka_server_replicamanager_partitioncount)", legend: "partitions {{instance}}" },
          { expr: "sum by (instance) (kafka_server_replicamanager_leadercount)", legend: "leaders {{instance}}" },
        ],
      }),
    )
    .withRow(row("Traffic"))
    .withPanel(
      timeseries({
        title: "Messages in/s",
        description:
          "Messages produced to the broker, all topics (the series without a topic label is the broker-wide total).",
        unit: "ops",
        width: 8,
        queries: [
          {
            expr: `sum(${rate('kafka_server_brokertopicmetrics_messagesin_total{topic=""}')})`,
            legend: "messages in/s",
          },
        ],
      }),
    )
    .withPanel(
      timeseries({
        title: "Bytes in and out/s",
        description: "Bytes produced to and fetched from the broker, all topics.",
        unit: "Bps",
        width: 8,
        queries: [
          { expr: `sum(${rate('kafka_server_brokertopicmetrics_bytesin_total{topic=""}')})`, legend: "in" },
          { expr: `sum(${rate('kafka_server_brokertopicmetrics_bytesout_total{topic=""}')})`, legend: "out" },
        ],
      }),
    )
    .withPanel(
      timeseries({
        title: "Requests/s by type",
        description: "Requests the broker served, by API (Produce, Fetch, OffsetCommit, Metadata...).",
        unit: "reqps",
        width: 8,
        queries: [
          { expr: `sum by (request) (${rate("kafka_network_requestmetrics_requests_total")})`, legend: "{{request}}" },
        ],
      }),
    )
    .withRow(row("Budgets (docs/cost.md)"))
    .withPanel(
      timeseries({
        title: "Database growth over 24 h (budget 50 GiB)",
        description:
          "pg_database_size_bytes now minus a day ago, per database (DatabaseGrowthOverBudget opens a ticket above 50 GiB for 1 h). Near 0 once bun run maintain archives and drops raw days past the retention.",
        unit: "bytes",
        width: 12,
        thresholdLines: [50 * 1024 ** 3],
        queries: [{ expr: "qrscan:pg_database_size_bytes:growth1d", legend: "{{datname}}" }],
      }),
    )
    .withPanel(
      timeseries({
        title: "Events per day at the last hour's rate (budget 100M)",
        description:
          "Accepted events per day, extrapolated from the last hour (EventVolumeOverBudget opens a ticket above 100M/day for 2 h).",
        unit: "short",
        width: 12,
        thresholdLines: [100e6],
        queries: [{ expr: "qrscan:scan_events_accepted:per_day_rate1h", legend: "events/day" }],
      }),
    );
}

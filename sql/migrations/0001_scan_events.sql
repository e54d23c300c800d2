-- Raw scan events, per-minute aggregates and dead letters.
--
-- scan_events is range-partitioned by day on scanned_at so a retention policy can drop a whole
-- day with DROP TABLE (no bulk DELETE, no vacuum debt). A unique index on a partitioned table must
-- include the partition key, so the idempotency key is (event_id, scanned_at): the same event
-- always carries the same scanned_at, so this is as strong as event_id alone.
CREATE TABLE scan_events (
  event_id        uuid             NOT NULL,
  scanned_at      timestamptz      NOT NULL,
  qr_id           text             NOT NULL,
  scanner_id      text,
  lat             double precision,
  lon             double precision,
  accuracy_m      double precision,
  user_agent      text,
  attributes      jsonb,
  client_ip       inet,
  received_at     timestamptz      NOT NULL,
  ingested_at     timestamptz      NOT NULL DEFAULT now(),
  schema_version  smallint         NOT NULL,
  kafka_partition integer          NOT NULL,
  kafka_offset    bigint           NOT NULL,
  PRIMARY KEY (event_id, scanned_at)
) PARTITION BY RANGE (scanned_at);

CREATE INDEX scan_events_qr_id_scanned_at ON scan_events (qr_id, scanned_at);

-- Creates the daily (UTC) partitions covering [from_day, to_day]; safe to call concurrently and often.
CREATE FUNCTION ensure_scan_event_partitions(from_day date, to_day date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  d date;
  name text;
BEGIN
  -- Serialize partition creation across workers (transaction-scoped: fine behind pgbouncer).
  PERFORM pg_advisory_xact_lock(hashtext('ensure_scan_event_partitions'));
  FOR d IN SELECT generate_series(from_day, to_day, interval '1 day')::date LOOP
    name := format('scan_events_%s', to_char(d, 'YYYYMMDD'));
    IF to_regclass(name) IS NULL THEN
      EXECUTE format(
        'CREATE TABLE %I PARTITION OF scan_events FOR VALUES FROM (%L) TO (%L)',
        name, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC'
      );
    END IF;
  END LOOP;
END $$;

-- Scans per QR code per minute (UTC), counting only rows really inserted into scan_events, in
-- the same transaction: replays never double count. The raw-vs-aggregated split lets retention
-- drop raw days while keeping the counts.
CREATE TABLE scan_counts (
  qr_id  text        NOT NULL,
  bucket timestamptz NOT NULL,
  count  bigint      NOT NULL,
  PRIMARY KEY (qr_id, bucket)
);

-- Events that can never be stored (undecodable, or failing the shared schema).
CREATE TABLE dead_letters (
  id               bigserial   PRIMARY KEY,
  source_topic     text        NOT NULL,
  source_partition integer     NOT NULL,
  source_offset    bigint      NOT NULL,
  key              bytea,
  payload          bytea,
  error            text        NOT NULL,
  failed_at        timestamptz NOT NULL,
  stored_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (source_topic, source_partition, source_offset)
);

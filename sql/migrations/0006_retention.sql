-- Retention (scripts/maintain.ts, docs/operations.md "Retention"): raw days past the policy are
-- archived to verified Parquet files and dropped; minute counts past theirs are rolled up into
-- hourly and daily counts, which are kept.

-- Scans per QR code per UTC hour and per UTC day, recomputed from scan_counts by `bun run maintain`.
CREATE TABLE scan_counts_hourly (
  qr_id  text        NOT NULL,
  bucket timestamptz NOT NULL,
  count  bigint      NOT NULL,
  PRIMARY KEY (qr_id, bucket)
);

CREATE TABLE scan_counts_daily (
  qr_id  text        NOT NULL,
  bucket timestamptz NOT NULL,
  count  bigint      NOT NULL,
  PRIMARY KEY (qr_id, bucket)
);

-- One row. Minute counts before minutes_pruned_before have been moved into the hourly and daily
-- tables and deleted: readers take hours and days before it from the rollups, after it from
-- scan_counts. A minute row that appears below it later (an event redriven that late) is added to
-- the rollups by the next run. NULL: nothing pruned yet. rolled_up_to: the hour up to which the
-- last run recomputed hours from minutes (each run recomputes from a little before it).
CREATE TABLE rollup_state (
  singleton             boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  minutes_pruned_before timestamptz,
  rolled_up_to          timestamptz
);
INSERT INTO rollup_state DEFAULT VALUES;

-- Raw days archived and dropped. A day here is never re-created by the workers (see below);
-- `bun run archive-restore DAY` loads it back from `file` and deletes its row.
CREATE TABLE archived_days (
  day               date        PRIMARY KEY,
  file              text        NOT NULL,
  row_count         bigint      NOT NULL,
  file_sha256       text        NOT NULL,
  content_checksum  text        NOT NULL,
  event_id_checksum text        NOT NULL,
  archived_at       timestamptz NOT NULL DEFAULT now()
);

-- Creates the day partitions named in `days`, except archived ones, which it returns: a late or
-- redriven event for an archived day must not bring back a partition holding that one event (the
-- worker dead-letters it instead). Same lock as before, which maintain also takes to drop a day.
DROP FUNCTION ensure_scan_event_partition_days(date[]);
CREATE FUNCTION ensure_scan_event_partition_days(days date[]) RETURNS date[]
LANGUAGE plpgsql AS $$
DECLARE
  d date;
  name text;
  archived date[] := '{}';
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('ensure_scan_event_partitions'));
  FOREACH d IN ARRAY days LOOP
    IF EXISTS (SELECT 1 FROM archived_days a WHERE a.day = d) THEN
      archived := archived || d;
      CONTINUE;
    END IF;
    name := format('scan_events_%s', to_char(d, 'YYYYMMDD'));
    IF to_regclass(name) IS NULL THEN
      EXECUTE format(
        'CREATE TABLE %I PARTITION OF scan_events FOR VALUES FROM (%L) TO (%L)',
        name, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC'
      );
    END IF;
  END LOOP;
  RETURN archived;
END $$;

-- The range form (0001, used by the benches) skips archived days too.
CREATE OR REPLACE FUNCTION ensure_scan_event_partitions(from_day date, to_day date) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM ensure_scan_event_partition_days(
    ARRAY(SELECT generate_series(from_day, to_day, interval '1 day')::date)
  );
END $$;

-- Creates exactly the daily (UTC) partitions named in `days`. The range form (0001) creates every
-- day between the first and the last, so one event dated years away from the others (possible for
-- records produced straight to Kafka, which skip the edge's time window) would create thousands.
CREATE FUNCTION ensure_scan_event_partition_days(days date[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  d date;
  name text;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('ensure_scan_event_partitions'));
  FOREACH d IN ARRAY days LOOP
    name := format('scan_events_%s', to_char(d, 'YYYYMMDD'));
    IF to_regclass(name) IS NULL THEN
      EXECUTE format(
        'CREATE TABLE %I PARTITION OF scan_events FOR VALUES FROM (%L) TO (%L)',
        name, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC'
      );
    END IF;
  END LOOP;
END $$;

-- Least-privilege roles (docs/security.md, "Database roles"). The role that runs the migrations
-- owns the schema and keeps every right: `bun run migrate` and the operator commands (maintain,
-- archive-restore, keys, dlq, restore-offsets) use it. Two group roles hold what the processes need:
--   qrscan_edge    the internet-facing server: reads what the stats route reads and the API keys,
--                  and writes only api_keys.last_used_at;
--   qrscan_worker  the sink: writes and reads scan_events and scan_counts, stores dead letters,
--                  has a temporary staging table, and creates day partitions only through
--                  ensure_scan_event_partition_days (SECURITY DEFINER, below): no DDL of its own.
-- They are NOLOGIN: each environment creates its own login users, members of one group each, with
-- passwords from its secret store (docs/deployment.md, "Database roles"). Passwords never go here.
-- Roles are cluster-wide, so they are created only when missing (every database of a cluster shares
-- them); the grants below are this database's.
DO $$
DECLARE
  r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['qrscan_edge', 'qrscan_worker'] LOOP
    CONTINUE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = r);
    BEGIN
      EXECUTE format('CREATE ROLE %I NOLOGIN', r);
    EXCEPTION
      -- Created meanwhile by the migration of another database of the cluster.
      WHEN duplicate_object OR unique_violation THEN NULL;
      WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'the group role % does not exist and % may not create roles: as an administrator, run CREATE ROLE qrscan_edge NOLOGIN; CREATE ROLE qrscan_worker NOLOGIN; (or give % CREATEROLE), then migrate again',
          r, current_user, current_user;
    END;
  END LOOP;
END $$;

-- Nothing for anyone by default: no objects in the schema, no temporary tables, no connection
-- (Postgres grants PUBLIC the last two on every database; before version 15 also CREATE on public).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
DO $$
BEGIN
  EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO qrscan_edge, qrscan_worker', current_database());
  -- The sink's staging table (worker/sink.ts, STAGE) is a temporary table.
  EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO qrscan_worker', current_database());
END $$;
GRANT USAGE ON SCHEMA public TO qrscan_edge, qrscan_worker;

-- Partitions are made by a function that runs as its owner (this migration's role), so the worker
-- needs no CREATE on the schema nor ownership of scan_events. Every name is schema-qualified and
-- the search path pinned: a SECURITY DEFINER function must not resolve a caller's temporary table
-- or function. Partitions need no grants of their own: Postgres checks the privileges of the
-- partitioned table a statement names, and the product only names scan_events.
CREATE OR REPLACE FUNCTION ensure_scan_event_partition_days(days date[]) RETURNS date[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  d date;
  name text;
  archived date[] := '{}';
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('ensure_scan_event_partitions'));
  FOREACH d IN ARRAY days LOOP
    IF EXISTS (SELECT 1 FROM public.archived_days a WHERE a.day = d) THEN
      archived := archived || d;
      CONTINUE;
    END IF;
    name := format('scan_events_%s', to_char(d, 'YYYYMMDD'));
    IF to_regclass(format('public.%I', name)) IS NULL THEN
      EXECUTE format(
        'CREATE TABLE public.%I PARTITION OF public.scan_events FOR VALUES FROM (%L) TO (%L)',
        name, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC'
      );
    END IF;
  END LOOP;
  RETURN archived;
END $$;
REVOKE EXECUTE ON FUNCTION ensure_scan_event_partition_days(date[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ensure_scan_event_partitions(date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ensure_scan_event_partition_days(date[]) TO qrscan_worker;

-- The edge: the stats route (server/stats.ts) and the key store (server/keys.ts).
GRANT SELECT ON rollup_state, scan_counts, scan_counts_hourly TO qrscan_edge;
GRANT SELECT ON api_keys TO qrscan_edge;
GRANT UPDATE (last_used_at) ON api_keys TO qrscan_edge;
-- The rate limits' replica count (server/replicas.ts): each edge upserts and deletes its heartbeat row.
GRANT SELECT, INSERT, UPDATE, DELETE ON edge_replicas TO qrscan_edge;

-- The worker: the sink (worker/sink.ts) and the dead-letter loop (worker/dead-letters.ts).
GRANT SELECT, INSERT ON scan_events TO qrscan_worker;
GRANT SELECT, INSERT ON scan_counts TO qrscan_worker;
GRANT UPDATE (count) ON scan_counts TO qrscan_worker;
GRANT INSERT ON dead_letters TO qrscan_worker;
-- ON CONFLICT (source_topic, source_partition, source_offset) reads its arbiter columns; the
-- payloads stay unreadable to the worker.
GRANT SELECT (source_topic, source_partition, source_offset) ON dead_letters TO qrscan_worker;
GRANT USAGE ON SEQUENCE dead_letters_id_seq TO qrscan_worker;

-- A table a later migration creates is private to the owner until that migration grants it:
-- test/integration/db-roles.test.ts holds every table's expected privileges per role and fails on
-- a table it does not know about that either role can touch.

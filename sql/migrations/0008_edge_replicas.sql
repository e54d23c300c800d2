-- Edge replicas' heartbeats (server/replicas.ts): each edge server upserts its row every
-- RATE_LIMIT_HEARTBEAT_SECONDS and counts the rows seen lately, which divides its rate limits;
-- its row is deleted on graceful shutdown, and rows of replicas killed without one are pruned.
CREATE TABLE edge_replicas (
  -- The pod's name (hostname) and process id.
  replica_id text PRIMARY KEY,
  -- Postgres' clock, written and compared by the same server, so replicas' clocks do not matter.
  seen_at timestamptz NOT NULL
);

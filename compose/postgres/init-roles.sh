#!/bin/sh
# Written by tools/compose-files.ts from shared/local-stack.ts; do not edit by hand.
# Runs once, when the data volume is initialised; POSTGRES_PASSWORD is every login's password.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -v pw="$POSTGRES_PASSWORD" <<'SQL'
CREATE ROLE qrscan LOGIN PASSWORD :'pw';
ALTER DATABASE qrscan OWNER TO qrscan;
CREATE ROLE qrscan_edge NOLOGIN;
CREATE ROLE qrscan_worker NOLOGIN;
CREATE ROLE edge LOGIN PASSWORD :'pw' IN ROLE qrscan_edge;
CREATE ROLE worker LOGIN PASSWORD :'pw' IN ROLE qrscan_worker;
CREATE ROLE monitor LOGIN PASSWORD :'pw' IN ROLE pg_monitor;
SQL

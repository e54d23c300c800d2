#!/bin/sh
# Patroni's bootstrap.post_bootstrap: runs once, on the member that initialised the cluster (the
# first leader), before any replica exists. What compose/postgres/entrypoint.sh does on a first
# start: the database POSTGRES_DB, the roles (init-roles.sh, mounted as in compose.yaml), and the
# pgBackRest stanza (archiving fails until it exists). $1 is Patroni's
# connection URL (the superuser, over the socket).
set -eu
export POSTGRES_USER=postgres POSTGRES_DB=${POSTGRES_DB:-qrscan} PGHOST=/var/run/postgresql PGPORT=5432
psql -v ON_ERROR_STOP=1 -q "$1" -c "CREATE DATABASE \"$POSTGRES_DB\""
for f in /docker-entrypoint-initdb.d/*.sh; do
  [ -e "$f" ] || continue
  echo "patroni-post-bootstrap: running $f"
  . "$f"
done
# Always: it is a no-op on a repository of this cluster, and it fails (and with it the bootstrap)
# on one holding another cluster's stanza, where archiving would otherwise fail in silence.
pgbackrest --stanza=qrscan stanza-create

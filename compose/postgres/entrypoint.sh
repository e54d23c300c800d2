#!/bin/sh
# The public postgres image's interface on Debian's PostgreSQL: on an empty data volume, initdb
# (POSTGRES_USER with POSTGRES_PASSWORD; scram-sha-256 over TCP, trust on the socket, which only
# this container can reach), POSTGRES_DB, then /docker-entrypoint-initdb.d/*.sh. Then the
# pgBackRest stanza, made once per repository (archiving fails until it exists), and postgres.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
export POSTGRES_USER POSTGRES_DB
mkdir -p /tmp/pgbackrest/log /tmp/pgbackrest/lock /tmp/pgbackrest/spool

# A server on the socket only, for the set-up steps below.
start_local() { pg_ctl -D "$PGDATA" -w -s -o "-c listen_addresses=''" start; }
stop_local() { pg_ctl -D "$PGDATA" -w -s -m fast stop; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
  start_local
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname postgres \
      -c "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  for f in /docker-entrypoint-initdb.d/*.sh; do
    [ -e "$f" ] || continue
    echo "postgres-entrypoint: running $f"
    . "$f"
  done
  stop_local
fi

if [ "${1:-}" = postgres ] && [ ! -f /var/lib/pgbackrest/backup/qrscan/backup.info ]; then
  start_local
  pgbackrest --stanza=qrscan stanza-create
  stop_local
fi
exec "$@"

#!/bin/sh
# Writes pgbouncer's auth file from the environment (never baked into the image), then runs it:
# one line per user of PGBOUNCER_USERS (the owner and the processes' logins), each with
# POSTGRES_PASSWORD (compose/postgres/init-roles.sh gives them all that password).
set -eu
: "${PGBOUNCER_USERS:?PGBOUNCER_USERS is required}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
umask 077
: > /tmp/userlist.txt
for user in $PGBOUNCER_USERS; do
  printf '"%s" "%s"\n' "$user" "$POSTGRES_PASSWORD" >> /tmp/userlist.txt
done
exec pgbouncer /etc/pgbouncer/pgbouncer.ini

#!/bin/sh
# A Patroni member (compose.ha.yaml's pg-1, pg-2): the directories pgBackRest writes in /tmp, then
# Patroni with /etc/patroni/patroni.yml. The member's own values (PATRONI_NAME, its addresses) and
# the passwords come from the environment, never the image; every login's password is
# POSTGRES_PASSWORD, as compose/postgres/entrypoint.sh makes them.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
: "${PATRONI_NAME:?PATRONI_NAME is required (the member name: pg-1, pg-2)}"
export PATRONI_SUPERUSER_PASSWORD="$POSTGRES_PASSWORD" PATRONI_REPLICATION_PASSWORD="$POSTGRES_PASSWORD" \
  PATRONI_RESTAPI_PASSWORD="$POSTGRES_PASSWORD"
mkdir -p /tmp/pgbackrest/log /tmp/pgbackrest/lock /tmp/pgbackrest/spool
exec patroni /etc/patroni/patroni.yml

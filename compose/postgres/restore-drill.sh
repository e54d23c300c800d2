#!/bin/sh
# The restore drill's cluster (compose.yaml's restore-drill service; README "Run it with compose"):
# restores the repository's latest backup into this container, replays the archived WAL up to the
# restore point DRILL_TARGET_NAME (or to the archive's end), and serves the result on 5432 until
# stopped, for the drill to compare with what it marked on the live database. The live cluster
# is never touched: the repository is mounted read-only and the data goes to this container's /tmp.
# The arguments are postgres's (settings the WAL requires at least as high as the live cluster's,
# such as max_connections).
set -eu
mkdir -p /tmp/pgbackrest/log /tmp/pgbackrest/lock /tmp/pgbackrest/spool
data=/tmp/drill-data
rm -rf "$data"
install -d -m 0700 "$data"
if [ -n "${DRILL_TARGET_NAME:-}" ]; then
  pgbackrest --stanza=qrscan "--pg1-path=$data" --archive-mode=off --type=name "--target=$DRILL_TARGET_NAME" \
    --target-action=promote restore
else
  pgbackrest --stanza=qrscan "--pg1-path=$data" --archive-mode=off restore
fi
echo "restore-drill: restored ${DRILL_TARGET_NAME:-to the end of the archive}; recovering"
exec postgres -D "$data" -c listen_addresses='*' -c archive_mode=off "$@"

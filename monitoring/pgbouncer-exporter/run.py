#!/usr/bin/python3
# Debian's prometheus-pgbouncer-exporter (bookworm) reads SHOW STATS's `total_requests`, a column
# pgbouncer dropped in 1.8 (Debian ships 1.18): it dies at start with KeyError 'total_requests'.
# This launcher runs the packaged exporter unchanged but for that one mapping:
#   pgbouncer_requests_total <- total_query_count (the column's successor),
# and adds two SHOW POOLS columns the saturation alerts and dashboards need:
#   pgbouncer_max_wait_seconds (maxwait), pgbouncer_active_servers (sv_active).
# It also reconnects: the packaged exporter opens one connection at start and, once pgbouncer
# restarts, answers every scrape with an error ("connection already closed") for ever.
# Used by the local stack (tools/stack/monitoring.ts) and compose.yaml alike, with the same
# arguments as the packaged command.
import sys

from prometheus_pgbouncer_exporter import cli, collectors, utils


class Reconnecting:
    """The connection the collectors share: opened again at the next scrape after it broke."""

    def __init__(self, *args):
        self._args = args
        self._conn = utils.get_connection(*args)

    def cursor(self):
        if self._conn.closed:
            self._conn = utils.get_connection(*self._args)
        return self._conn.cursor()

    def close(self):
        self._conn.close()


cli.get_connection = Reconnecting

stats = dict(collectors.StatsCollector.metrics)
stats["total_query_count"] = stats.pop("total_requests")
collectors.StatsCollector.metrics = stats
collectors.PoolsCollector.metrics = {
    **collectors.PoolsCollector.metrics,
    "maxwait": ("max_wait_seconds", "How long the oldest waiting client has waited, in seconds"),
    "sv_active": ("active_servers", "Server connections linked to a client"),
}

sys.exit(cli.main())

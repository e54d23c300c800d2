#!/usr/bin/python3
# Debian's prometheus-pgbouncer-exporter (bookworm) reads SHOW STATS's `total_requests`, a column
# pgbouncer dropped in 1.8 (Debian ships 1.18): it dies at start with KeyError 'total_requests'.
# This launcher runs the packaged exporter unchanged but for that one mapping:
#   pgbouncer_requests_total <- total_query_count (the column's successor),
# and adds two SHOW POOLS columns the saturation alerts and dashboards need:
#   pgbouncer_max_wait_seconds (maxwait), pgbouncer_active_servers (sv_active).
# It also reconnects: the packaged exporter opens one connection at start and, once pgbouncer
# restarts, answers every scrape with an error ("connection already closed") for ever.
# And it exports pgbouncer_up: 1 when every SHOW query of the scrape answered, 0 when pgbouncer
# refused the connection or a query failed; the scrape still answers (200), so a dead pgbouncer
# (pgbouncer_up 0) is told apart from a dead exporter (the scrape fails at once) and from a hung
# pgbouncer (the query blocks: the scrape times out). PoolerDown reads the first and the last
# (monitoring/prometheus/rules/database.yml); a dead exporter is only TargetDown.
# Used by the local stack (tools/stack/monitoring.ts) and compose.yaml alike, with the same
# arguments as the packaged command.
import logging
import sys

import psycopg2
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_pgbouncer_exporter import cli, collectors, utils


class Reconnecting:
    """The connection the collectors share: opened at a scrape, again at the next after it broke."""

    def __init__(self, *args):
        # Not at start: an exporter started before pgbouncer (or while it is down) must answer
        # pgbouncer_up 0, not exit.
        self._args = args
        self._conn = None

    def cursor(self):
        if self._conn is None or self._conn.closed:
            self._conn = utils.get_connection(*self._args)
        return self._conn.cursor()

    def close(self):
        if self._conn is not None:
            self._conn.close()


class Scrape:
    """The packaged collectors (cli.main registers them here), collected as one, and pgbouncer_up.

    All or nothing: a scrape whose queries half failed would show a pool that is not there.
    """

    def __init__(self):
        self.collectors = []

    def register(self, collector):
        self.collectors.append(collector)

    def describe(self):
        # The names are pgbouncer's columns, known at the first scrape; without describe the
        # registry would collect at registration, before cli.main has registered anything.
        return []

    def collect(self):
        families, up = [], 0
        # Twice: a connection pgbouncer closed since the last scrape (it restarted) fails its
        # first query; a new one answers. Refused twice is down.
        for _ in range(2):
            try:
                families = [family for c in self.collectors for family in c.collect()]
                up = 1
                break
            except psycopg2.Error as e:
                # Only pgbouncer's failures: a bug of ours (a KeyError) still fails the scrape,
                # and is TargetDown, not "pgbouncer down".
                logging.warning("pgbouncer does not answer: %s", " ".join(str(e).split()))
                for c in self.collectors:
                    c.connection.close()
        yield from families
        yield GaugeMetricFamily(
            "pgbouncer_up", "1 if pgbouncer answered every SHOW query of this scrape, else 0", value=up
        )


cli.get_connection = Reconnecting
scrape = Scrape()
REGISTRY.register(scrape)
cli.REGISTRY = scrape

stats = dict(collectors.StatsCollector.metrics)
stats["total_query_count"] = stats.pop("total_requests")
collectors.StatsCollector.metrics = stats
collectors.PoolsCollector.metrics = {
    **collectors.PoolsCollector.metrics,
    "maxwait": ("max_wait_seconds", "How long the oldest waiting client has waited, in seconds"),
    "sv_active": ("active_servers", "Server connections linked to a client"),
}

sys.exit(cli.main())

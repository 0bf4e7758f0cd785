"""The relay's round, run in this process against the bench's databases: its time, statements and connections.

The relay opens its connections through ``compat.open_connection``; for the time of a measurement
that opener hands out connections whose cursors count what they execute.
"""

import contextlib
import functools
import statistics
import time

import psycopg2
import psycopg2.extensions

_counts = {"statements": 0, "connections": 0}


@functools.cache
def _counting(cursor_class):
    def execute(self, query, params=None):
        _counts["statements"] += 1
        return cursor_class.execute(self, query, params)

    return type(f"Counting{cursor_class.__name__}", (cursor_class,), {"execute": execute})


class CountingConnection(psycopg2.extensions.connection):
    def cursor(self, *args, **kwargs):
        cursor_class = kwargs.pop("cursor_factory", None) or self.cursor_factory or psycopg2.extensions.cursor
        return super().cursor(*args, cursor_factory=_counting(cursor_class), **kwargs)


@contextlib.contextmanager
def counted():
    """Count the statements and connections of everything the addon opens inside; yields the counts."""
    from odoo.sql_db import connection_info_for

    from odoo.addons.celery_task import compat

    def open_connection(dbname, role=None, **parameters):
        _counts["connections"] += 1
        return psycopg2.connect(connection_factory=CountingConnection, **connection_info_for(dbname)[1], **parameters)

    original = compat.open_connection
    compat.open_connection = open_connection
    _counts.update(statements=0, connections=0)
    try:
        yield _counts
    finally:
        compat.open_connection = original


def time_call(function, *args):
    """(ms, statements, connections) of one call of ``function``."""
    with counted() as counts:
        started = time.perf_counter()
        function(*args)
        elapsed = (time.perf_counter() - started) * 1000
    return {"ms": elapsed, "statements": counts["statements"], "connections": counts["connections"]}


def relay_rounds(queues, rounds=3):
    """Median ms, statements and connections of ``rounds`` rounds of ``relay_all(queues)``."""
    from odoo.addons.celery_task.worker import connections, relay

    # Like the worker's main process: the connections kept from the first round serve the next ones.
    # Those kept from before are closed, so that the first round opens counting ones.
    connections.close_all()
    time_call(relay.relay_all, queues)
    runs = [time_call(relay.relay_all, queues) for _ in range(rounds)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}

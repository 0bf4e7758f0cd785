"""The raw Celery baseline: a plain app, no Odoo, with the settings the addon gives its tasks.

JSON, late acks and a prefetch multiplier of 1, like ``config.DEFAULTS``; no result backend,
because the floor is what Celery plus one psycopg2 transaction per task costs and nothing more.
The worker runs it as ``celery -A raw_app worker``; the benchmark imports it to publish.
"""

import os
import time

import psycopg2
from celery import Celery

BROKER_ENV = "CT_BENCH_RAW_BROKER"
DATABASE_ENV = "CT_BENCH_RAW_DB"
TABLE = "ct_bench_row"


def plain_app(name, broker_env, default_broker):
    """A Celery app with the addon's task settings and nothing else: the baselines' app."""
    app = Celery(name, set_as_current=False)
    app.conf.update(
        broker_url=os.environ.get(broker_env, default_broker),
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
    )
    return app


app = plain_app("ct_bench_raw", BROKER_ENV, "redis://127.0.0.1:6379/11")

_connections = {}


def connection():
    """One connection per pool process, opened on its first task (never across the fork)."""
    pid = os.getpid()
    if pid not in _connections:
        _connections[pid] = psycopg2.connect(dbname=os.environ[DATABASE_ENV])
    return _connections[pid]


def update_row(sql, params):
    conn = connection()
    with conn.cursor() as cr:
        cr.execute(sql, params)
    conn.commit()


@app.task(name="ct_bench.noop")
def noop():
    """What the enqueue comparison publishes: the cheapest possible message."""


@app.task(name="ct_bench.touch")
def touch(row_id, value):
    """The drain floor: one UPDATE of one row, one COMMIT."""
    update_row(f"UPDATE {TABLE} SET value = %s WHERE id = %s", [value, row_id])


@app.task(name="ct_bench.stamp")
def stamp(row_id):
    """The latency reference: read the clock first, like the Odoo probe."""
    update_row(f"UPDATE {TABLE} SET started = %s WHERE id = %s", [time.time(), row_id])

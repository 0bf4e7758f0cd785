"""What Prometheus scrapes: the gauges read from the task table, and every metric's name.

Two places expose them:

- each worker's main process, on ``celery_metrics_port`` (off unless set): these gauges for every
  database it serves, with the worker's own counters and histograms (worker/metrics.py);
- the Odoo route ``/celery_task/metrics``, for Celery managers or the token of the system parameter
  ``celery_task.metrics_token``: these gauges for the request's database (controllers/metrics.py),
  for a cluster whose workers have no port to scrape.

The gauges give the whole cluster's view from any one scrape: they come from one statement per
database (task_record.METRICS), kept ``celery_metrics_cache_seconds`` (5), so several Prometheus
servers scraping every second cost PostgreSQL one read per database and period. The queues'
consumers and their concurrency come from the workers themselves (Celery's ``inspect``, kept
CONSUMERS_SECONDS). Names follow Prometheus's conventions: the unit in the name, ``_total`` for
counters, few labels.
"""

import threading
import time

from prometheus_client.core import GaugeMetricFamily

from . import app, config, task_record, task_specs

PREFIX = "celery_task"
CONSUMERS_SECONDS = 30.0

#: The states a task's work is counted in while it waits to run or runs: what autoscaling sizes for.
WORK_STATES = ("pending", "deferred", "retry", "started")

GAUGES = {
    "tasks": ("Unfinished tasks, by database, queue and state", ("database", "queue", "state")),
    "oldest_waiting_seconds": (
        "Age of the oldest task waiting to run (pending, deferred or a due retry), since it became due",
        ("database", "queue"),
    ),
    "failed_last_hour": ("Tasks that failed in the last hour", ("database", "queue")),
    "limit_slots_used": ("Running tasks holding a slot of a concurrency limit", ("database", "limit")),
    "limit_slots": ("Size of a concurrency limit", ("database", "limit")),
    "workers_seen": ("Workers that ran a task in the last five minutes", ("database",)),
    "queue_paused": ("1 while a queue is paused", ("database", "queue")),
    "queue_consumers": ("Workers consuming a queue on the broker", ("queue",)),
    "queue_concurrency": ("Pool processes of the workers consuming a queue", ("queue",)),
    "queue_work": ("Tasks waiting to run or running (pending, deferred, retry, started)", ("database", "queue")),
    "queue_load": (
        "queue_work against the concurrency of the queue's consumers (with none: against 1): scale out above 1",
        ("database", "queue"),
    ),
}


def read_database(cr):
    """The rows task_record.METRICS reads in ``cr``'s database."""
    cr.execute(task_record.METRICS)
    return [tuple(row) for row in cr.fetchall()]


class _Cached:
    """A value computed at most every ``seconds``: what several scrapes in a row share."""

    def __init__(self, compute, seconds):
        self.compute, self.seconds = compute, seconds
        self.lock = threading.Lock()
        self.at, self.value = None, None

    def get(self):
        with self.lock:
            if self.at is None or time.monotonic() - self.at >= self.seconds():
                self.value, self.at = self.compute(), time.monotonic()
            return self.value


class TaskTableCollector:
    """A prometheus_client collector of the gauges; ``read()`` gives ``{database: rows of read_database}``."""

    def __init__(self, read):
        seconds = lambda: config.addon_option("metrics_cache_seconds")  # noqa: E731 - read at each refresh
        self.tables = _Cached(read, seconds)

    def describe(self):
        return []

    def collect(self):
        families = {
            name: GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=labels) for name, (text, labels) in GAUGES.items()
        }
        consumers = app.consumers(CONSUMERS_SECONDS)
        for queue, (count, concurrency) in sorted(consumers.items()):
            families["queue_consumers"].add_metric([queue], count)
            families["queue_concurrency"].add_metric([queue], concurrency)
        for dbname, rows in sorted(self.tables.get().items()):
            self._database(families, dbname, rows, consumers)
        yield from families.values()

    def _database(self, families, dbname, rows, consumers):
        work, sizes, used = {}, {}, {}
        for kind, label, detail, value in rows:
            if kind == "tasks":
                families["tasks"].add_metric([dbname, label, detail], value)
                if detail in WORK_STATES:
                    work[label] = work.get(label, 0.0) + value
            elif kind == "oldest_waiting":
                families["oldest_waiting_seconds"].add_metric([dbname, label], value)
            elif kind == "failed_last_hour":
                families["failed_last_hour"].add_metric([dbname, label], value)
            elif kind == "slots_used":
                used[label] = value
            elif kind == "limit_size":
                sizes[label] = value
            elif kind == "workers_seen":
                families["workers_seen"].add_metric([dbname], value)
            elif kind == "paused":
                families["queue_paused"].add_metric([dbname, label], 1.0)
        for limit in sorted(set(used) | set(sizes) | _declared_limits()):
            families["limit_slots_used"].add_metric([dbname, limit], used.get(limit, 0.0))
            families["limit_slots"].add_metric([dbname, limit], sizes.get(limit) or _default_size(limit))
        for queue, tasks in sorted(work.items()):
            concurrency = consumers.get(app.broker_queue(queue, dbname), (0, 0))[1]
            families["queue_work"].add_metric([dbname, queue], tasks)
            families["queue_load"].add_metric([dbname, queue], tasks / max(concurrency, 1))


def _declared_limits():
    return {spec.limit_name for spec in task_specs.SPECS.values() if spec.limit_name}


def _default_size(limit):
    """A limit's size without a record: the configured one, else its task's concurrency, else 1."""
    spec = next((spec for spec in task_specs.SPECS.values() if spec.limit_name == limit), None)
    return float(spec.default_limit_size if spec else config.configured_limit_sizes().get(limit, 1))

"""What the Prometheus metrics cost: a drain with a worker's metrics on against off, and a scrape.

The drain: the addon's worker (metrics off) and a second worker with ``celery_metrics_port`` set (its
processes keep their counters in files, prometheus_client's multiprocess mode), each draining the same
tasks, in turns: tasks/s and worker CPU per task, metrics on against off (expected: no difference
beyond the runs' spread). The scrape: with ``--finished-rows`` finished tasks and ``--metrics-backlog``
waiting in the table, the gauges' statement timed in this process (and EXPLAINed), then a scrape of
the worker's endpoint read anew and one within its cache period.
"""

import contextlib
import os
import statistics
import sys
import time
import urllib.request

import background_cost
import backlog
import measure
import stack
from sides import Ours

SCRAPES = 5


def scrape_ms(port):
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        response.read()
    return (time.perf_counter() - started) * 1000


def bench(ctx, ours, ids, markers, preset, broker):
    from odoo.addons.celery_task import metrics, task_record

    pid = os.getpid()
    queue = f"ct-bench-{pid}-{broker}-metrics"
    port = stack.free_port()
    env = {
        "ODOO_CELERY_BROKER_URL": stack.broker_url(broker, "ours"),
        "ODOO_CELERY_DEFAULT_QUEUE": queue,
        "ODOO_CELERY_METRICS_PORT": str(port),
    }
    worker = stack.Worker(
        f"ct-bench-metrics-{pid}@localhost",
        [sys.executable, str(stack.REPO / "odoo_celery.py"), "-c", str(ctx["config"])],
        queue,
        ctx["home"].root / f"worker-metrics-{broker}.log",
        env,
        cwd=str(ctx["home"].root),
    )
    result = {"drain": {"metrics_off": [], "metrics_on": []}}
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stack.delete_queues, ours.app, [queue, f"{queue}-drain"])
        cleanup.callback(worker.stop)
        worker.start(ours.app)
        metered = Ours(ours.registry, ours.rows, worker, f"{queue}-drain")
        tasks = ids[: preset["tasks"]]
        for number in range(1, preset["runs"] + 1):
            for name, side in (("metrics_off", ours), ("metrics_on", metered)):
                measure.log(f"metrics: run {number}/{preset['runs']}, {name}: {len(tasks)} tasks")
                value = next(markers)
                measure.fill(side, tasks, value)
                result["drain"][name].append(measure.drain(side, len(tasks), value))
        ours.reset()
        finished, waiting = preset["finished_rows"], preset["metrics_backlog"]
        measure.log(f"metrics: the gauges over {finished} finished and {waiting} waiting tasks")
        backlog.insert_finished(ours.rows, finished, f"{queue}-history")
        background_cost.insert_waiting(ours.rows.conn, waiting, f"{queue}-waiting")
        statement = []
        for _ in range(SCRAPES):
            with ours.registry.cursor() as cr:
                started = time.perf_counter()
                metrics.read_database(cr)
                statement.append((time.perf_counter() - started) * 1000)
        with ours.rows.conn.cursor() as cr:
            cr.execute("EXPLAIN (ANALYZE, BUFFERS) " + task_record.METRICS)
            plan = "\n".join(line for (line,) in cr.fetchall())
        uncached = []
        for _ in range(SCRAPES):
            time.sleep(5.1)  # past the cache period (celery_metrics_cache_seconds, 5)
            uncached.append(scrape_ms(port))
        cached = [scrape_ms(port) for _ in range(SCRAPES)]
        result["scrape"] = {
            "finished_rows": finished,
            "waiting": waiting,
            "statement_ms": statistics.median(statement),
            "scrape_read_ms": statistics.median(uncached),
            "scrape_cached_ms": statistics.median(cached),
            "plan": plan,
        }
        ours.reset()
    return result

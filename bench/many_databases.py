"""Many databases, one worker, ``db_name`` unset: memory, a new database's first task, the relay's round.

The worker's config names no database; its ``dbfilter`` matches only this run's copies
(``ct_bench_<pid>_m<n>``), each made by ``createdb -T`` from one installed database. As the count
grows (``--databases 1,10,50``), each new database gets one ``stamp`` call from this process once
the worker consumes its queue: the time from its commit to the method's start is the first task of a
database no pool process has loaded yet. Then: PSS per pool process, the worker's CPU while idle,
and the relay's round (and the databases' scan) run in this process with the same settings.
"""

import contextlib
import os
import statistics
import sys
import threading
import time

import measure
import psycopg2
import relay_cost
import stack

MODEL = "ct.bench.item"
IDLE_SECONDS = 10
FAIRNESS_PROBES = 9  # the template's items 2-10
FAIRNESS_BACKLOG = 10000
# The server's connections are shared with whatever else runs here: a step that could exhaust them is skipped.
PER_DATABASE_GUESS = 5
SPARE_CONNECTIONS = 25


def copies(pid):
    return f"ct_bench_{pid}_m"


@contextlib.contextmanager
def discovering(dbfilter):
    """This process as a worker with ``db_name`` unset and the run's dbfilter; each database its own queue."""
    from odoo.tools import config as odoo_config

    from odoo.addons.celery_task import config, databases

    saved = {key: odoo_config.get(key) for key in ("db_name", "dbfilter")}
    odoo_config["db_name"], odoo_config["dbfilter"] = "", dbfilter
    os.environ["ODOO_CELERY_DATABASE_QUEUES"] = "True"
    config.database_queues.cache_clear()
    databases.served(refresh=True)  # found with the run's dbfilter, not a scan made before
    try:
        yield
    finally:  # db_name named again: served() returns it and never reads what discovery found
        odoo_config["db_name"], odoo_config["dbfilter"] = saved["db_name"], saved["dbfilter"]
        os.environ.pop("ODOO_CELERY_DATABASE_QUEUES", None)
        config.database_queues.cache_clear()


def first_task_latency(dbname):
    """One ``stamp`` in ``dbname`` from this process: seconds from its COMMIT to the method's first line."""
    from odoo import sql_db
    from odoo.modules.registry import Registry

    seconds = probe_latency(dbname, 1)
    Registry.delete(dbname)
    sql_db.close_db(dbname)
    close_publisher_connection(dbname)
    return seconds


def probe_latency(dbname, item_id):
    """One ``stamp`` of ``item_id`` in ``dbname``: seconds from its COMMIT to the method's first line."""
    from odoo import api
    from odoo.modules.registry import Registry

    committed = []
    with Registry(dbname).cursor() as cr:
        cr.execute("UPDATE ct_bench_item SET started = NULL WHERE id = %s", [item_id])
        cr.postcommit.add(lambda: committed.append(time.time()))
        api.Environment(cr, api.SUPERUSER_ID, {})[MODEL].browse(item_id).stamp()
    with contextlib.closing(psycopg2.connect(dbname=dbname)) as conn, conn.cursor() as cr:

        def started():
            cr.execute("SELECT started FROM ct_bench_item WHERE id = %s", [item_id])
            conn.rollback()
            return cr.fetchone()[0]

        return stack.wait_for(started, 120, 0.005, f"a probe in {dbname}") - committed[0]


def fairness(app, queue, busy, other, backlog):
    """Probes in ``other`` with no backlog, then while ``backlog`` tasks of ``busy`` wait on the same worker."""
    from odoo import api
    from odoo.modules.registry import Registry

    def probes():
        seconds = []
        for item_id in range(2, 2 + FAIRNESS_PROBES):
            seconds.append(probe_latency(other, item_id))
            time.sleep(0.2)
        return seconds

    quiet = probes()
    with contextlib.closing(psycopg2.connect(dbname=busy)) as conn, conn, conn.cursor() as cr:
        cr.execute("INSERT INTO ct_bench_item (value) SELECT 0 FROM generate_series(1, %s) RETURNING id", [backlog])
        ids = [item_id for (item_id,) in cr.fetchall()]
    with Registry(busy).cursor() as cr:
        for item in api.Environment(cr, api.SUPERUSER_ID, {})[MODEL].browse(ids):
            item.touch(1)
    close_publisher_connection(busy)
    loaded = probes()
    with contextlib.closing(psycopg2.connect(dbname=busy)) as conn, conn.cursor() as cr:
        cr.execute("SELECT count(*) FROM celery_task WHERE state = 'pending'")
        left = cr.fetchone()[0]
    stack.purge_queues(app.celery_app, [app.broker_queue(queue, busy)])
    return {
        "backlog": backlog,
        "left_after_probes": left,
        "quiet_s": {"median": statistics.median(quiet), "max": max(quiet), "runs": quiet},
        "under_backlog_s": {"median": statistics.median(loaded), "max": max(loaded), "runs": loaded},
    }


def close_publisher_connection(dbname):
    """This process's publisher thread keeps a connection per database it marked sent: close the copy's, so
    that the run's connections are the worker's."""
    from odoo.addons.celery_task.publisher import publisher

    publisher.wait_idle(timeout=30)
    for thread in threading.enumerate():
        kept = getattr(getattr(getattr(thread, "_target", None), "__self__", None), "connections", None)
        if isinstance(kept, dict) and dbname in kept:
            kept.pop(dbname).close()


def connections(prefix):
    """(connections to the run's copies, every connection of the server, max_connections)."""
    with contextlib.closing(psycopg2.connect(dbname="postgres")) as conn, conn.cursor() as cr:
        cr.execute(
            "SELECT count(*) FILTER (WHERE datname LIKE %s), count(*), current_setting('max_connections')::int"
            " FROM pg_stat_activity",
            [prefix + "%"],
        )
        return cr.fetchone()


def wait_consumed(app, worker, queues):
    def consumed():
        answer = app.control.inspect(destination=[worker.name], timeout=1).active_queues() or {}
        return set(queues) <= {queue["name"] for queue in answer.get(worker.name, [])}

    stack.wait_for(consumed, 60, 0.5, f"{worker.name} to consume {len(queues)} database queues")


def bench(ctx, broker, counts):
    """Per count: new databases, their first tasks, memory, idle CPU and the relay's round."""
    from odoo.addons.celery_task import app, databases

    pid = os.getpid()
    prefix = copies(pid)
    dbfilter = rf"^{prefix}\d+$"
    queue = f"ct-bench-{pid}-{broker}-databases"
    config = ctx["home"].write_config(None, name="databases.conf", enable_celery_task="True", dbfilter=dbfilter)
    worker = stack.Worker(
        f"ct-bench-databases-{pid}@localhost",
        [sys.executable, str(stack.REPO / "odoo_celery.py"), "-c", str(config)],
        queue,
        ctx["home"].root / f"worker-databases-{broker}.log",
        {"ODOO_CELERY_BROKER_URL": stack.broker_url(broker, "ours"), "ODOO_CELERY_DEFAULT_QUEUE": queue},
        cwd=str(ctx["home"].root),
    )
    names, steps = [], []
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(lambda: [stack.drop_database(name) for name in names])
        cleanup.enter_context(discovering(dbfilter))
        app.celery_app.conf.task_default_queue = queue
        cleanup.callback(lambda: stack.delete_queues(app.celery_app, [app.broker_queue(queue, name) for name in names]))
        cleanup.callback(worker.stop)
        for count in sorted(counts):
            new = [f"{prefix}{number:03d}" for number in range(len(names) + 1, count + 1)]
            ours, used, limit = connections(prefix)
            needed = used + len(new) * max(PER_DATABASE_GUESS, ours / max(1, len(names)))
            if needed > limit - SPARE_CONNECTIONS:
                why = f"would need about {needed:.0f} of the server's {limit} connections (now {used}, {ours} ours)"
                measure.log(f"databases: {count} skipped: {why}")
                steps.append({"databases": count, "skipped": why})
                break
            measure.log(f"databases: {count} served")
            for name in new:
                names.append(name)
                stack.copy_database(ctx["template_db"], name)
            if worker.process is None:
                worker.start(app.celery_app)
            wait_consumed(app.celery_app, worker, [app.broker_queue(queue, name) for name in names])
            latencies = [first_task_latency(name) for name in new]
            cpu = worker.cpu_seconds()
            time.sleep(IDLE_SECONDS)
            idle_pct = (worker.cpu_seconds() - cpu) * 100 / IDLE_SECONDS
            scan = relay_cost.time_call(databases.served, True)  # finds the new databases
            rescan = relay_cost.time_call(databases.served, True)  # what every scan costs from then on
            steps.append(
                {
                    "databases": count,
                    "served": len(databases.served()),
                    "first_task_s": {
                        "median": statistics.median(latencies),
                        "max": max(latencies),
                        "min": min(latencies),
                        "runs": latencies,
                    },
                    "memory": worker.memory(),
                    "connections": connections(prefix)[0],
                    "idle_cpu_pct": idle_pct,
                    "scan": scan,
                    "rescan": rescan,
                    "relay": relay_cost.relay_rounds([queue]),
                }
            )
        part = {"steps": steps, "worker_log": str(worker.log_path)}
        if len(names) >= 2:
            measure.log(f"databases: fairness, {FAIRNESS_BACKLOG} tasks waiting in {names[0]}, probes in {names[1]}")
            part["fairness"] = fairness(app, queue, names[0], names[1], FAIRNESS_BACKLOG)
    return part

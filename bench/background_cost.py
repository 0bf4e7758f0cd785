"""Background work with 1, 4 and 16 idle workers over a waiting backlog: PostgreSQL statements and CPU.

Every worker used to run the relay, the scan and the live round itself; now one leader per role
does, and the others wait in the server (worker/leadership.py). Measured on a PostgreSQL cluster of
the part's own (tests/hosts.py's ``Cluster``, with ``pg_stat_statements``), holding a copy of the
bench's database and ``--background-backlog`` tasks waiting in a queue no worker consumes: the
relay's statements read every unfinished task each round (45 ms at 50,000), so a worker that runs
them costs what a worker costs. For each count of workers (each a main process and 2 pool processes,
all on one queue): the workers start and settle, then for IDLE_SECONDS the statements executed
(``pg_stat_statements``' calls, every database, this part's own statements left out) and the CPU of
every PostgreSQL process of the cluster are counted. The figure is each count against one worker
(target: 16 workers at most 1.5x one).

Also: the relay's round over ``--relay-backlog`` waiting tasks, timed in this process on the
machine's cluster (relay_cost.py).
"""

import contextlib
import os
import subprocess
import sys
import time

import measure
import psycopg2
import relay_cost
import stack

sys.path.insert(0, str(stack.REPO / "tests"))
import hosts  # the tests' own PostgreSQL cluster, next to this folder

SETTLE_SECONDS = 10
IDLE_SECONDS = 60
IDLE_QUEUE = "ct-bench-background-elsewhere"

# Tasks that wait: pending, sent a moment ago, in a queue the workers do not consume.
WAITING_ROWS = """
    INSERT INTO celery_task (
        uuid, name, dbname, user_id, model_name, method_name, record_ids, args, context, call_repr, queue,
        state, attempts, receives, unique_running, notice_pending, create_date, sent_at, write_date
    )
    SELECT gen_random_uuid()::text, 'ct.bench.item.touch', current_database(), 1, 'ct.bench.item', 'touch',
           '[1]', '{"args": [' || g || '], "kwargs": {}}', '{}', 'ct.bench.item(1,).touch(' || g || ')', %(queue)s,
           'pending', 0, 'nothing', false, false, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC',
           now() AT TIME ZONE 'UTC'
      FROM generate_series(1, %(count)s) AS g
"""

STATEMENTS = "SELECT COALESCE(sum(calls), 0) FROM pg_stat_statements WHERE query NOT LIKE %s"
OWN_MARK = "%ct-bench-background-probe%"  # a comment in this part's own statements


def insert_waiting(connection, count, queue):
    with connection.cursor() as cr:
        cr.execute(WAITING_ROWS, {"queue": queue, "count": count})
        cr.execute("ANALYZE celery_task")


def postgres_cpu_seconds(postmaster_pid):
    """CPU seconds so far of the cluster's postmaster and every process it started (backends, vacuum)."""
    children = subprocess.run(["pgrep", "-P", str(postmaster_pid)], capture_output=True, text=True).stdout
    return sum(stack.process_cpu_seconds(pid) for pid in [postmaster_pid, *map(int, children.split())])


def statements(connection):
    with connection.cursor() as cr:
        cr.execute(f"/* ct-bench-background-probe */ {STATEMENTS}", [OWN_MARK])
        return cr.fetchone()[0]


def idle_cost(cluster, connection, workers):
    """Statements per second and PostgreSQL CPU ms per second while ``workers`` sit idle."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    time.sleep(SETTLE_SECONDS)
    before_statements, before_cpu = statements(connection), postgres_cpu_seconds(postmaster)
    before_workers = sum(worker.cpu_seconds() for worker in workers)
    started = time.monotonic()
    time.sleep(IDLE_SECONDS)
    seconds = time.monotonic() - started
    return {
        "workers": len(workers),
        "statements_per_s": (statements(connection) - before_statements) / seconds,
        "postgres_cpu_ms_per_s": (postgres_cpu_seconds(postmaster) - before_cpu) * 1000 / seconds,
        "workers_cpu_ms_per_s": (sum(worker.cpu_seconds() for worker in workers) - before_workers) * 1000 / seconds,
    }


def bench(ctx, broker, counts, backlog):
    """Per count of idle workers: the background work's statements and PostgreSQL CPU, and each against one."""
    from odoo.addons.celery_task import app

    pid = os.getpid()
    dbname = f"ct_bench_{pid}_background"
    queue = f"ct-bench-{pid}-{broker}-background"
    cluster = hosts.Cluster("127.0.0.1", stack.free_port(), "shared_preload_libraries = 'pg_stat_statements'")
    steps = []
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(cluster.stop)
        cluster.start()
        measure.log(f"background: a cluster of its own, a copy of the bench's database, {backlog} waiting tasks")
        cluster.copy_database(ctx["registry"].db_name, dbname)
        connection = cluster.connect(dbname)
        cleanup.callback(connection.close)
        with connection.cursor() as cr:
            cr.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        insert_waiting(connection, backlog, IDLE_QUEUE)
        config = ctx["home"].write_config(
            dbname,
            name="background.conf",
            enable_celery_task="True",
            db_host=str(cluster.sockets),
            db_port=str(cluster.port),
        )
        env = {"ODOO_CELERY_BROKER_URL": stack.broker_url(broker, "ours"), "ODOO_CELERY_DEFAULT_QUEUE": queue}
        cleanup.callback(stack.delete_queues, app.celery_app, [queue])
        workers = []
        for count in sorted(counts):
            measure.log(f"background: {count} idle worker(s) over {backlog} waiting tasks, {IDLE_SECONDS} s")
            while len(workers) < count:
                worker = stack.Worker(
                    f"ct-bench-background-{pid}-{len(workers)}@localhost",
                    [sys.executable, str(stack.REPO / "odoo_celery.py"), "-c", str(config)],
                    queue,
                    ctx["home"].root / f"worker-background-{len(workers)}.log",
                    env,
                    cwd=str(ctx["home"].root),
                )
                cleanup.callback(worker.stop)
                workers.append(worker.start(app.celery_app))
            steps.append(idle_cost(cluster, connection, workers))
    one = steps[0]
    for step in steps:
        for key in ("statements_per_s", "postgres_cpu_ms_per_s"):
            step[f"{key}_vs_one"] = step[key] / one[key] if one[key] else None
    return {"backlog": backlog, "idle_seconds": IDLE_SECONDS, "steps": steps}


def relay_round(ctx, size):
    """The relay's round (this process, the machine's cluster) over ``size`` tasks waiting in the queue it relays."""
    queue = f"ct-bench-{os.getpid()}-relay-only"
    measure.log(f"background: the relay's round over {size} waiting tasks")
    with contextlib.closing(psycopg2.connect(dbname=ctx["registry"].db_name)) as connection:
        connection.autocommit = True
        insert_waiting(connection, size, queue)
        try:
            return {"backlog": size, "relay": relay_cost.relay_rounds([queue])}
        finally:
            with connection.cursor() as cr:
                cr.execute("DELETE FROM celery_task WHERE queue = %s", [queue])

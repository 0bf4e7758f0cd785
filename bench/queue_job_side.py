"""OCA queue_job as a side, deployed as its README says, behind the same calls as the other sides.

``odoo-bin`` in prefork mode (``workers = 2``, ``server_wide_modules = base,web,queue_job``, a
``[queue_job] channels = root:2`` section, ``max_cron_threads = 0``) serves a database of its own that
has ``queue_job`` and ``queue_job_bench``, named by ``db_name`` alone: with a ``dbfilter`` too, Odoo
lists the databases on every request, over a new connection to ``postgres``, one per job. Its job
runner (a worker process of that server) hears of each job through PostgreSQL's NOTIFY and has an
HTTP worker run it (``/queue_job/runjob``). The benchmark process is the caller:
``with_delay().touch(value)`` in a committed transaction. The server is started and stopped as a
whole, as OCA's own benchmark script (``benchmark_jobs.py``) starts it after enqueueing its backlog:
nothing of it is paused or replaced.
"""

import subprocess
import sys
import time

import requests
import stack
from sides import Rows

MODEL = "qj.bench.item"
TABLE = "qj_bench_item"
ADDON = "queue_job_bench"


def available():
    """Whether ``pip install odoo-addon-queue-job`` put queue_job where its server can load it."""
    return (stack.pip_addons() / "queue_job" / "__manifest__.py").is_file()


def gevent_starts():
    """Whether the prefork server's long-polling child can start: gevent loads its plugins through
    pkg_resources, which fails on zope packages installed under normalized names (bench/requirements.txt)."""
    check = "import gevent.monkey; gevent.monkey.patch_all()"
    return subprocess.run([sys.executable, "-c", check], capture_output=True, check=False).returncode == 0


def odoo_bin():
    """The server's script: a prefork server starts its long-polling child as ``<argv[0]> gevent``, which
    ``python -m odoo`` (argv[0] ``odoo/__main__.py``) cannot do."""
    return stack.odoo_root().parent / "odoo-bin"


class QueueJobServer(stack.ProcessTree):
    """The Odoo server of the queue_job side: its config, ports, process group and log."""

    def __init__(self, home, dbname):
        self.name = f"queue_job server of {dbname}"
        self.queue = "root"  # its one channel
        self.dbname = dbname
        self.http_port = stack.free_port()
        self.log_path = home.root / "queue_job-server.log"
        self.config = home.write_config(
            dbname,
            name="queue_job.conf",
            sections={"queue_job": {"channels": "root:2"}},
            workers=2,
            max_cron_threads=0,  # as OCA's benchmark script; the runner requeues dead jobs itself
            server_wide_modules="base,web,queue_job",
            http_interface="127.0.0.1",
            http_port=self.http_port,
            gevent_port=stack.free_port(),
        )

    def install(self):
        stack.create_odoo_database(self.config, self.dbname, ADDON, self.log_path.with_suffix(".install.log"))

    def start(self, timeout=120):
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(odoo_bin()), "-c", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=str(self.log_path.parent),
            )

        def healthy():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}, see {self.log_path}")
            try:
                return requests.get(f"http://127.0.0.1:{self.http_port}/web/health", timeout=1).ok
            except requests.RequestException:
                return False

        stack.wait_for(healthy, timeout, interval=0.2, what=f"{self.name} to answer /web/health")
        return self


class QueueJob:
    """The queue_job side: this process enqueues with ``with_delay()``, the server's runner dispatches."""

    name = "queue_job"

    def __init__(self, registry, rows, server):
        from odoo import api

        self.api = api
        self.registry = registry
        self.rows = rows
        self.worker = server

    def reset(self):
        """Start each run from an empty job table, as the addon's side does with its outbox."""
        self.rows.query("TRUNCATE queue_job CASCADE")

    def describe(self):
        return f"jobs by state: {dict(self.rows.query('SELECT state, count(*) FROM queue_job GROUP BY 1'))}"

    def route(self, queue):
        """One channel (root) for every job."""

    def stop_consumer(self):
        """Stop the server: the jobs enqueued meanwhile wait for :meth:`start_consumer`."""
        self.worker.stop()

    def start_consumer(self):
        self.worker.start()

    def settle(self):
        """A committed job is in the table, and its NOTIFY is queued for the runner: nothing more to wait for."""

    def touch(self, item_id, value):
        """One ``with_delay()`` call in its own transaction, committed."""
        with self.registry.cursor() as cr:
            self.api.Environment(cr, self.api.SUPERUSER_ID, {})[MODEL].browse(item_id).with_delay().touch(value)

    def stamp(self, item_id):
        """Like ``Ours.stamp``: (time PostgreSQL's COMMIT returned, time ``cr.commit()`` returned)."""
        committed = []
        with self.registry.cursor() as cr:
            cr.postcommit.add(lambda: committed.append(time.time()))
            self.api.Environment(cr, self.api.SUPERUSER_ID, {})[MODEL].browse(item_id).with_delay().stamp()
        return committed[0], time.time()


def deploy(cleanup, home, dbname, rows_count, log):
    """Install the side's database, start its server; everything is undone by ``cleanup``. Returns the side."""
    from odoo.modules.registry import Registry

    server = QueueJobServer(home, dbname)
    log(f"queue_job: installing {ADDON} in {dbname}")
    cleanup.callback(stack.drop_database, dbname)
    server.install()
    rows = Rows(dbname, TABLE)
    cleanup.callback(rows.close)
    rows.query(
        "INSERT INTO {table} (value, create_uid, write_uid, create_date, write_date)"
        " SELECT 0, 1, 1, now(), now() FROM generate_series(1, %s)",
        [rows_count],
    )
    cleanup.callback(server.stop)
    server.start()
    log(f"queue_job: server up on port {server.http_port}, log {server.log_path}")
    return QueueJob(Registry(dbname), rows, server)

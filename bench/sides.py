"""What is compared: the addon, the Odoo ORM floor, and raw Celery, each behind the same few calls.

Every side publishes ``touch(record, value)`` tasks and its worker writes ``value`` into one row;
the benchmark counts the rows holding a run's value to know how far a drain has got.
"""

import contextlib
import time

MODEL = "ct.bench.item"
ODOO_TABLE = "ct_bench_item"
FLOOR_TASK = "ct_bench.orm_touch"


class Rows:
    """Reads what the tasks wrote, on a plain autocommit connection, the same way for every side."""

    def __init__(self, dbname, table):
        import psycopg2

        self.table = table
        self.conn = psycopg2.connect(dbname=dbname)
        self.conn.autocommit = True

    def query(self, sql, params=()):
        with self.conn.cursor() as cr:
            cr.execute(sql.format(table=self.table), params)
            return cr.fetchall() if cr.description else None

    def ids(self, count):
        return [row[0] for row in self.query("SELECT id FROM {table} ORDER BY id LIMIT %s", [count])]

    def count_value(self, value):
        return self.query("SELECT count(*) FROM {table} WHERE value = %s", [value])[0][0]

    def clear_started(self):
        self.query("UPDATE {table} SET started = NULL WHERE started IS NOT NULL")

    def started(self, ids):
        """The start time of each id, or None while any of them has not started."""
        found = dict(self.query("SELECT id, started FROM {table} WHERE id = ANY(%s)", [ids]))
        times = [found.get(item_id) for item_id in ids]
        return None if None in times else times

    def close(self):
        self.conn.close()


class CeleryDrain:
    """How a Celery side holds a drain's backlog: in a queue its worker consumes only from ``start_draining``."""

    def hold(self):
        self.route(self.drain_queue)

    def start_draining(self):
        self.app.control.add_consumer(self.drain_queue, destination=[self.worker.name], reply=True)

    def stop_draining(self):
        self.app.control.cancel_consumer(self.drain_queue, destination=[self.worker.name], reply=True)


class Ours(CeleryDrain):
    """The addon: this process is the Odoo caller, the worker runs ``odoo_celery.py``."""

    name = "ours"

    def __init__(self, registry, rows, worker, drain_queue):
        from odoo import api

        from odoo.addons.celery_task.app import celery_app
        from odoo.addons.celery_task.publisher import publisher

        self.api = api
        self.publisher = publisher
        self.app = celery_app
        self.registry = registry
        self.rows = rows
        self.worker = worker
        self.drain_queue = drain_queue

    def reset(self):
        """Start each run from an empty outbox, so runs do not slow down as it grows."""
        self.rows.query("TRUNCATE celery_task CASCADE")  # a throwaway database: its dependents go too

    def describe(self):
        """Where the tasks are, when a drain does not finish."""
        return f"task records by state: {dict(self.rows.query('SELECT state, count(*) FROM celery_task GROUP BY 1'))}"

    def route(self, queue):
        """Decorated methods without ``queue=`` go to the default queue."""
        self.app.conf.task_default_queue = queue

    def stop_consumer(self):
        """Stop the worker: the tasks sent to its queue meanwhile wait for :meth:`start_consumer`."""
        self.worker.stop()

    def start_consumer(self):
        self.worker.start(self.app)

    @contextlib.contextmanager
    def _env(self):
        with self.registry.cursor() as cr:
            yield self.api.Environment(cr, self.api.SUPERUSER_ID, {})

    def settle(self):
        """Wait until the publisher thread has sent (and marked sent) every committed call."""
        if not self.publisher.wait_idle(timeout=600):
            raise TimeoutError("the publisher thread did not finish within 600 s")

    def touch(self, item_id, value, method="touch"):
        """One decorated call in its own transaction, committed, as a request would make it."""
        with self._env() as env:
            getattr(env[MODEL].browse(item_id), method)(value)

    def touch_many(self, ids, value, method="touch", **options):
        """One decorated call per id, all in one committed transaction: a backlog filled fast.

        ``options``: the calls' own (``with_delay``).
        """
        with self._env() as env:
            for item in env[MODEL].browse(ids):
                getattr(item.with_delay(**options) if options else item, method)(value)

    def touch_delayed(self, item_id, value, **options):
        """``touch`` with options of its own (queue_job's spelling), in its own committed transaction."""
        with self._env() as env:
            env[MODEL].browse(item_id).with_delay(**options).touch(value)

    def chord(self, ids, anchor_id, value):
        """A chord in one committed transaction: ``touch(value)`` on each id, then ``chord_done`` on the anchor."""
        from odoo.addons.celery_task import chord, signature

        with self._env() as env:
            members = [signature(item.touch, value) for item in env[MODEL].browse(ids)]
            chord(members, signature(env[MODEL].browse(anchor_id).chord_done)).delay()

    def stamp(self, item_id):
        """Like ``touch``; returns (time PostgreSQL's COMMIT returned, time ``cr.commit()`` returned)."""
        committed = []
        with self._env() as env:
            env.cr.postcommit.add(lambda: committed.append(time.time()))
            env[MODEL].browse(item_id).stamp()
        return committed[0], time.time()


class OdooFloor(CeleryDrain):
    """The same ORM write as a plain Celery task in the addon's worker: no outbox, claim or task record.

    What any Celery integration of Odoo pays per task; the addon's own cost is the gap to it.
    """

    name = "floor"

    def __init__(self, app, rows, worker, dbname, drain_queue, registry=None):
        self.app = app
        self.rows = rows
        self.worker = worker
        self.dbname = dbname
        self.drain_queue = drain_queue
        self.registry = registry  # for the enqueue floor (write_transactions)

    @classmethod
    def beside(cls, ours, drain_queue):
        """The floor in the addon's own worker, database and records."""
        return cls(ours.app, ours.rows, ours.worker, ours.registry.db_name, drain_queue, ours.registry)

    def reset(self):
        """Nothing accumulates on this side."""

    def settle(self):
        """``apply_async`` has returned: the message is on the broker."""

    def describe(self):
        return f"see {self.worker.log_path}"

    def route(self, queue):
        """Always the drain queue: this side takes part in the drain only."""

    def write_transactions(self, ids, value):
        """Wall and CPU ms per Odoo transaction that writes one field of one record and commits.

        What a caller's transaction costs before any task is added to it: the enqueue floor.
        """
        from odoo import api

        started, cpu = time.perf_counter(), time.process_time()
        for item_id in ids:
            with self.registry.cursor() as cr:
                env = api.Environment(cr, api.SUPERUSER_ID, {})  # held: the commit only flushes live environments
                env[MODEL].browse(item_id).write({"value": value})
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        return {"write_txn_ms": wall * 1000 / len(ids), "write_txn_cpu_ms": cpu * 1000 / len(ids)}

    def touch(self, item_id, value):
        self.app.send_task(FLOOR_TASK, args=[self.dbname, item_id, value], queue=self.drain_queue, ignore_result=True)

    def touch_many(self, ids, value, method=None):
        for item_id in ids:
            self.touch(item_id, value)


class Raw(CeleryDrain):
    """Plain Celery (bench/raw_app.py) on the same broker, one psycopg2 transaction per task."""

    name = "raw"

    def __init__(self, raw_app, rows, worker, drain_queue, sink_queue):
        self.raw_app = raw_app
        self.app = raw_app.app
        self.rows = rows
        self.worker = worker
        self.drain_queue = drain_queue
        self.sink_queue = sink_queue
        self.queue = worker.queue

    def reset(self):
        """Nothing accumulates on this side."""

    def settle(self):
        """``apply_async`` has returned: the message is on the broker."""

    def describe(self):
        return f"see {self.worker.log_path}"

    def route(self, queue):
        self.queue = queue

    def touch(self, row_id, value):
        self.raw_app.touch.apply_async((row_id, value), queue=self.queue)

    def stamp(self, row_id):
        """(time before publishing, time ``apply_async`` returned): the counterparts of ``Ours.stamp``."""
        before = time.time()
        self.raw_app.stamp.apply_async((row_id,), queue=self.queue)
        return before, time.time()

    def noop_enqueue(self, count):
        """Wall and CPU ms per ``apply_async`` of a no-op task, to a queue no worker reads."""
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            self.raw_app.noop.apply_async(queue=self.sink_queue)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        return {"noop_enqueue_ms": wall * 1000 / count, "noop_enqueue_cpu_ms": cpu * 1000 / count}

"""Session-wide real parts: one Odoo 18 database (and a copy), a worker per broker."""

import contextlib
import os
import types

import pytest

import harness

odoo, ODOO_MISSING = harness.find_odoo()

BROKERS = harness.BROKERS


def pytest_report_header(config):
    return f"odoo: {ODOO_MISSING or odoo.release.version + ' at ' + os.path.dirname(odoo.__file__)}"


def pytest_collection_modifyitems(config, items):
    if ODOO_MISSING:
        skip = pytest.mark.skip(reason=f"ODOO TESTS SKIPPED: {ODOO_MISSING}")
        for item in items:
            if "odoo" in item.keywords:
                item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if ODOO_MISSING:
        terminalreporter.write_sep("!", f"ODOO TESTS SKIPPED: {ODOO_MISSING}", red=True, bold=True)


class Stack:
    """The caller's Odoo (this process) plus the workers it talks to."""

    def __init__(self, home, config_path, databases, log_dir):
        from odoo.modules.registry import Registry

        from odoo.addons.celery_task import app, serialization

        self.home = home
        self.config_path = config_path
        self.db, self.other_db = databases
        self.log_dir = log_dir
        self.app = app.celery_app
        self.reconfigure = app.reconfigure
        self.serialization = serialization
        self.registry = Registry(self.db)
        self.workers = {}
        self.broker = None
        self.run_id = os.getpid()

    def queue(self, broker):
        return f"ct-test-{self.run_id}-{broker}"

    def worker(self, broker, name=None, queue=None, env=None, **kwargs):
        """A worker process (not started) on ``broker``; by default the shared one of that broker."""
        name = name or f"{broker}-{self.run_id}@localhost"
        queue = queue or self.queue(broker)
        return harness.Worker(
            self.config_path,
            name,
            queue,
            self.log_dir / f"worker-{name.split('@')[0]}.log",
            env={"ODOO_CELERY_BROKER_URL": BROKERS[broker], "ODOO_CELERY_DEFAULT_QUEUE": queue, **(env or {})},
            **kwargs,
        )

    def point_caller(self, broker_url, queue):
        """Send the caller's next messages to ``queue`` on ``broker_url``."""
        self.reconfigure(broker_url=broker_url, task_default_queue=queue)
        self.broker = None

    def use(self, broker):
        """Point the caller at ``broker`` and make sure a worker consumes its queue."""
        if self.broker != broker:
            self.reconfigure(broker_url=BROKERS[broker], task_default_queue=self.queue(broker))
            self.broker = broker
        worker = self.workers.get(broker)
        if worker is None or worker.process.poll() is not None:
            worker = self.workers[broker] = self.worker(broker).start(self.app)
        return worker

    @contextlib.contextmanager
    def env(self, uid=None, context=None, dbname=None):
        """An environment on a fresh cursor that commits on a clean exit, like a request."""
        from odoo import api
        from odoo.modules.registry import Registry

        registry = Registry(dbname) if dbname else self.registry
        with registry.cursor() as cr:
            yield api.Environment(cr, uid or api.SUPERUSER_ID, context or {})

    def task_row(self, task_uuid, dbname=None):
        with self.env(dbname=dbname) as env:
            env.cr.execute("SELECT * FROM celery_task WHERE uuid = %s", [task_uuid])
            return env.cr.dictfetchone()

    def wait_row(self, task_uuid, states=("done", "failed", "cancelled"), timeout=30, dbname=None):
        def reached():
            row = self.task_row(task_uuid, dbname)
            return row if row and row["state"] in states else None

        return harness.wait_for(reached, timeout, what=f"task {task_uuid} to reach {states}")

    def new_item(self, **values):
        with self.env() as env:
            return env["task.test.item"].create({"name": "item", **values}).id

    def item(self, item_id, dbname=None):
        with self.env(dbname=dbname) as env:
            return env["task.test.item"].browse(item_id).read(["value", "note", "runs"])[0]

    def stop(self):
        for worker in self.workers.values():
            worker.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    if ODOO_MISSING:
        pytest.skip(f"ODOO TESTS SKIPPED: {ODOO_MISSING}")
    for service, port in (("PostgreSQL", 5432), ("Redis", 6379), ("RabbitMQ", 5672)):
        if not harness.port_open("127.0.0.1", port):
            pytest.fail(f"{service} is not listening on 127.0.0.1:{port}; start it (see .ci/run)")
    run_id = os.getpid()
    databases = (f"ct_test_{run_id}", f"ct_test_{run_id}_other")
    os.environ["CELERY_TASK_TEST_OTHER_DB"] = databases[1]
    log_dir = tmp_path_factory.mktemp("logs")
    home = harness.OdooHome(odoo)
    config_path = home.write_config(
        "odoo.conf",
        databases,
        enable_celery_task="True",
        celery_broker_url=BROKERS["redis"],
        celery_backend_url=harness.RESULT_BACKEND,
        celery_relay_interval="1",
        celery_relay_delay="3",
        celery_concurrency_backoff="0.05",
    )
    harness.create_database(config_path, databases[0], "celery_task_test", log_dir / "install.log")
    harness.copy_database(databases[0], databases[1])
    odoo.tools.config.parse_config(["-c", str(config_path)], setup_logging=False)
    stack = Stack(home, config_path, databases, log_dir)
    yield stack
    stack.stop()
    from odoo import sql_db

    sql_db.close_all()
    for dbname in databases:
        harness.drop_database(dbname)
    home.cleanup()


@pytest.fixture(params=sorted(BROKERS))
def broker(request, stack):
    """Run the test once on Redis and once on RabbitMQ, each with its own worker."""
    stack.use(request.param)
    return request.param


@pytest.fixture
def redis(stack):
    return stack.use("redis")


@pytest.fixture
def ct(stack):
    """The addon's modules, imported once Odoo knows its addons path."""
    from odoo.addons.celery_task import config, exceptions, runner, serialization, task_specs

    return types.SimpleNamespace(
        config=config, exceptions=exceptions, runner=runner, serialization=serialization, task_specs=task_specs
    )

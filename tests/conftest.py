"""Session-wide real parts: one Odoo 18 database (and a copy), a worker per broker."""

import os
import shutil
import subprocess
import warnings

import pytest

import harness

odoo, ODOO_MISSING = harness.find_odoo()

BROKERS = harness.BROKERS


def pytest_report_header(config):
    return f"odoo: {ODOO_MISSING or f'{odoo.release.version} at {harness.odoo_source_root(odoo)}'}"


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: "hosts" not in item.keywords)  # the slowest file first: it runs beside the others
    if ODOO_MISSING and os.environ.get("CELERY_TASK_TEST_REQUIRE_ODOO"):
        raise pytest.UsageError(f"CELERY_TASK_TEST_REQUIRE_ODOO is set and {ODOO_MISSING}")
    if ODOO_MISSING:
        skip = pytest.mark.skip(reason=f"ODOO TESTS SKIPPED: {ODOO_MISSING}")
        for item in items:
            if "odoo" in item.keywords:
                item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if ODOO_MISSING:
        terminalreporter.write_sep("!", f"ODOO TESTS SKIPPED: {ODOO_MISSING}", red=True, bold=True)


def parse_config(config_path):
    """Odoo's configuration, read as its server does (which also sets up its logging, on every series)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        odoo.tools.config.parse_config(["-c", str(config_path)])


@pytest.fixture(scope="session")
def odoo_stack(tmp_path_factory):
    """The Odoo side: two databases with the addon and the test addon, and this process as the caller.

    No broker and no worker: the fast tier (``-m fast``) needs only this.
    """
    if ODOO_MISSING:
        pytest.skip(f"ODOO TESTS SKIPPED: {ODOO_MISSING}")
    if not harness.port_open("127.0.0.1", 5432):
        pytest.fail("PostgreSQL is not listening on 127.0.0.1:5432; start it (see .ci/run)")
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
        celery_schedule_horizon="3",
    )
    parse_config(config_path)
    template = harness.create_database(config_path, databases[0], harness.TEST_MODULES, log_dir / "install.log")
    harness.copy_database(template, databases[1])
    stack = harness.Stack(home, config_path, databases, log_dir)
    stack.template = template
    yield stack
    stack.stop()
    from odoo import sql_db

    sql_db.close_all()
    for dbname in databases:
        harness.drop_database(dbname)
    home.cleanup()


@pytest.fixture(scope="session")
def stack(odoo_stack):
    """The whole stack: the Odoo side, Redis and RabbitMQ; workers start when a test asks for one."""
    for service, port in (("Redis", 6379), ("RabbitMQ", 5672)):
        if not harness.port_open("127.0.0.1", port):
            pytest.fail(f"{service} is not listening on 127.0.0.1:{port}; start it (see .ci/run)")
    return odoo_stack


@pytest.fixture(params=sorted(BROKERS))
def broker(request, stack):
    """Run the test once on Redis and once on RabbitMQ, each with its own worker."""
    stack.use(request.param)
    return request.param


@pytest.fixture
def redis(stack):
    return stack.use("redis")


@pytest.fixture
def fault_worker(stack, request):
    """A dedicated worker factory; every worker it made is stopped after the test."""
    made = []

    def make(broker, **kwargs):
        suffix = f"{request.node.name.replace('[', '-').strip(']')}-{len(made)}"
        kwargs.setdefault("name", f"fault-{suffix}-{stack.run_id}@localhost")
        kwargs.setdefault("queue", f"ct-test-{stack.run_id}-fault-{suffix}")
        worker = stack.worker(broker, **kwargs)
        made.append(worker)
        return worker

    yield make
    for worker in made:  # its test is over: no need to wait for a warm shutdown
        worker.kill()


@pytest.fixture
def private_redis(tmp_path):
    """Start a redis-server of the test's own (``harness.PrivateRedis``); every one is stopped after the test."""
    servers = []

    def start():
        servers.append(harness.PrivateRedis(tmp_path).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def database_copy(stack):
    """A copy of the test database and its filestore, made while the suite's connections stay open."""
    from odoo.tools import config

    name = f"{stack.db}_copy"
    harness.drop_database(name)
    subprocess.run(["createdb", name], check=True, capture_output=True)
    dump = subprocess.Popen(["pg_dump", "--no-owner", stack.db], stdout=subprocess.PIPE)
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", name], stdin=dump.stdout, check=True, capture_output=True)
    assert dump.wait() == 0
    filestore = config.filestore(stack.db)
    if os.path.isdir(filestore):
        shutil.copytree(filestore, config.filestore(name), dirs_exist_ok=True)
    yield name
    harness.drop_database(name)
    shutil.rmtree(config.filestore(name), ignore_errors=True)

"""A worker and beat with no db_name serve every database that has celery_task, new ones included."""

import os
import subprocess
import sys
import tempfile
import time

import pytest

import harness

pytestmark = pytest.mark.odoo

SCAN_SECONDS = 1
BACKLOG = 1000


@pytest.fixture(scope="module")
def every(stack):
    """A worker serving every database of this run (dbfilter), each on a queue of its own.

    The caller publishes to the databases' queues meanwhile, as a server without db_name does.
    """
    queue = f"ct-test-{stack.run_id}-every"
    config_path = stack.home.write_config(
        "every.conf",
        [],
        dbfilter=f"^ct_test_{stack.run_id}(_|$)",
        enable_celery_task="True",
        celery_broker_url=harness.BROKERS["redis"],
        celery_database_scan_interval=str(SCAN_SECONDS),
        celery_relay_interval="1",
        celery_relay_delay="3",
        celery_concurrency_backoff="0.05",
    )
    worker = stack.worker("redis", name=f"every-{stack.run_id}@localhost", queue=queue)
    worker.entry = [sys.executable, str(harness.REPO / "odoo_celery.py"), "-c", str(config_path)]
    os.environ["ODOO_CELERY_DATABASE_QUEUES"] = "True"
    stack.point_caller(harness.BROKERS["redis"], queue)
    worker.start(stack.app)
    worker.config_path = config_path
    yield worker
    worker.stop()
    del os.environ["ODOO_CELERY_DATABASE_QUEUES"]
    stack.point_caller(harness.BROKERS["redis"], queue)


@pytest.fixture
def new_database(stack):
    """A database of this run created now, with the addons installed (a copy of the installed template)."""
    from odoo import sql_db
    from odoo.modules.registry import Registry

    name = f"ct_test_{stack.run_id}_new_{time.monotonic_ns() % 10**6}"
    harness.copy_database(stack.template, name)
    yield name
    Registry.delete(name)
    sql_db.close_db(name)
    harness.drop_database(name)


def bump_in(stack, dbname, amount):
    """A new item in ``dbname`` and a committed bump of it there: (its id, the AsyncResult)."""
    with stack.env(dbname=dbname) as env:
        item = env["task.test.item"].create({"name": f"in {dbname}"})
        return item.id, item.bump(amount=amount)


def test_every_database_with_the_addon_is_served_each_task_in_its_own(stack, every, new_database):
    started = time.monotonic()
    calls = {dbname: bump_in(stack, dbname, n) for n, dbname in enumerate((stack.db, stack.other_db, new_database), 1)}
    for dbname, (_, result) in calls.items():
        assert stack.wait_row(result.id, dbname=dbname, timeout=30)["state"] == "done"
    served_after = time.monotonic() - started
    for n, (dbname, (item_id, _)) in enumerate(calls.items(), 1):
        assert stack.item(item_id, dbname=dbname)["value"] == n, f"the task ran in {dbname}"
    log = every.log()
    for dbname in calls:
        assert f"consuming {every.queue}.{dbname}" in log
    print(f"a database created after the worker started: its task done {served_after:.1f} s after its creation")


def test_a_dropped_database_is_refused_with_a_precise_error_and_the_worker_goes_on(stack, every, new_database):
    from odoo import sql_db
    from odoo.modules.registry import Registry

    _, result = bump_in(stack, new_database, 1)
    stack.wait_row(result.id, dbname=new_database)
    Registry.delete(new_database)
    sql_db.close_db(new_database)
    harness.drop_database(new_database)
    harness.wait_for(
        lambda: f"no longer consuming {every.queue}.{new_database}" in every.log(), 15, what="the queue to be dropped"
    )
    stack.app.send_task("task.test.item.bump", args=[new_database, 1], queue=every.queue)

    def refused():
        return [
            line
            for line in every.log().splitlines()
            if repr(new_database) in line and "exist" in line and "on this server" in line and "nothing ran" in line
        ]

    assert harness.wait_for(refused, 20, what="the refusal in the log"), "a precise error names the database"
    _, result = bump_in(stack, stack.db, 1)
    assert stack.wait_row(result.id)["state"] == "done", "the worker goes on"


def test_the_relay_covers_a_database_found_after_the_start(stack, every, new_database):
    with stack.env(dbname=new_database) as env:
        item = env["task.test.item"].create({"name": "stranded"})
        result = item.bump()
        env.cr.postcommit.clear()  # as if this caller died right after its commit
    row = stack.wait_row(result.id, dbname=new_database, timeout=30)
    assert (row["state"], row["attempts"]) == ("done", 1)
    assert "stranded task(s) of " + new_database in every.log()


def test_a_scan_connects_only_to_the_databases_it_does_not_serve_yet(stack, monkeypatch):
    from odoo.tools import config as odoo_config

    from odoo.addons.celery_task import compat, databases

    monkeypatch.setitem(odoo_config, "db_name", "")  # as a worker without db_name
    monkeypatch.setitem(odoo_config, "dbfilter", f"^ct_test_{stack.run_id}(_|$)")
    monkeypatch.setitem(databases._found, "served", ())  # this process's own, restored after the test
    monkeypatch.setitem(databases._found, "at", None)
    opened = []

    def open_connection(dbname, role=None):
        opened.append(dbname)
        return original(dbname, role=role)

    original = compat.open_connection
    monkeypatch.setattr(compat, "open_connection", open_connection)
    first = databases.served(refresh=True)
    assert {stack.db, stack.other_db} <= set(first)
    assert set(first) <= set(opened), "the first scan checks every database it finds"
    opened.clear()
    assert databases.served(refresh=True) == first
    assert "postgres" in opened, "the databases were listed again"
    assert not set(opened) & set(first), f"a scan connected to databases it serves already: {opened}"


def test_a_database_that_uninstalls_the_addon_stops_being_served(stack, every, new_database):
    from odoo import api
    from odoo.modules.registry import Registry

    _, result = bump_in(stack, new_database, 1)
    assert stack.wait_row(result.id, dbname=new_database)["state"] == "done"
    harness.wait_for(lambda: f"consuming {every.queue}.{new_database}" in every.log(), 10, what="its queue")
    with Registry(new_database).cursor() as cr:
        env = api.Environment(cr, api.SUPERUSER_ID, {})
        env["ir.module.module"].search([("name", "=", "celery_task")]).button_immediate_uninstall()
    gone = f"no longer consuming {every.queue}.{new_database}"
    harness.wait_for(lambda: gone in every.log(), 20, what="the worker to stop serving it")
    assert f"database {new_database} no longer has the tables of celery_task" in every.log()
    failures = every.log().count(f"failed for {new_database}")
    time.sleep(3 * SCAN_SECONDS)
    assert every.log().count(f"failed for {new_database}") == failures, "its jobs stopped failing"
    assert f"consuming {every.queue}.{new_database}" not in every.log().split(gone)[-1], "and it stays unserved"


def test_a_backlog_in_one_database_does_not_hold_up_another(stack, every, record_property):
    with stack.env(dbname=stack.other_db) as env:
        items = env["task.test.item"].create([{"name": f"backlog {n}"} for n in range(BACKLOG)])
        backlog = [item.bump().id for item in items]

    def left():
        with stack.env(dbname=stack.other_db) as env:
            env.cr.execute("SELECT count(*) FROM celery_task WHERE uuid = ANY(%s) AND state <> 'done'", [backlog])
            return env.cr.fetchone()[0]

    harness.wait_for(lambda: left() < BACKLOG, 30, what="the backlog to start draining")
    left_at_call, started = left(), time.monotonic()
    _, fresh = bump_in(stack, stack.db, 1)
    stack.wait_row(fresh.id, timeout=60)
    waited, left_after = time.monotonic() - started, left()
    record_property("fairness", f"fresh task of another database done in {waited:.2f} s with {left_after} left")
    assert left_after > left_at_call / 2, (
        f"the fresh task waited for the backlog: done in {waited:.2f} s, "
        f"{left_at_call} of {BACKLOG} left at its call and {left_after} after"
    )
    for task_uuid in backlog:
        stack.wait_row(task_uuid, dbname=stack.other_db, timeout=120)


def test_an_upgraded_module_is_reloaded_through_odoo_signaling(stack, every):
    _, before = bump_in(stack, stack.other_db, 1)
    stack.wait_row(before.id, dbname=stack.other_db)
    subprocess.run(
        [*stack.odoo_command(every.config_path), "-d", stack.other_db, "-u", "celery_task_test", "--stop-after-init"],
        check=True,
        capture_output=True,
        cwd=tempfile.gettempdir(),
        timeout=300,
    )
    _, after = bump_in(stack, stack.other_db, 1)
    assert stack.wait_row(after.id, dbname=stack.other_db)["state"] == "done"
    reloaded = (  # Odoo's signaling (18.0 and later), or what stands in for it on 17.0 (compat)
        "Reloading the model registry after database signaling",
        "changed without a signal; reloading its registry",
    )
    assert any(line in every.log() for line in reloaded), "no restart: the pool process reloaded the registry"


def test_beat_runs_the_periodic_tasks_of_a_database_found_after_its_start(stack, every, new_database):
    beat = harness.Beat(
        every.config_path, "beat", every.queue, stack.log_dir / "beat-every.log", env=every.env, entry=every.entry
    ).start()
    try:
        beat.wait_started()
        with stack.env(uid=2, dbname=new_database) as env:
            item = env["task.test.item"].create({"name": "beaten"})
            env["celery.periodic.task"].create(
                {
                    "name": "bump every second",
                    "task": "task.test.item.bump",
                    "record_ids": f"[{item.id}]",
                    "interval_number": 1,
                    "interval_unit": "seconds",
                }
            )
            item_id = item.id
        harness.wait_for(
            lambda: stack.item(item_id, dbname=new_database)["runs"] >= 2, 30, what="beat's runs in the new database"
        )
    finally:
        with stack.env(dbname=new_database) as env:
            env.cr.execute("UPDATE celery_periodic_task SET enabled = false")
        beat.stop()

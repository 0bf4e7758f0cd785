"""Fast tier: the task record's transitions on a real database, with no broker and no worker.

This process plays the pool process: it claims, runs and finishes records with the worker's own
code, and reads what the relay would select. ``python -m pytest -m fast`` runs only these.
"""

import contextlib
import datetime
import logging
import types
import uuid

import psycopg2
import pytest
from celery.exceptions import Ignore, Reject

pytestmark = [pytest.mark.odoo, pytest.mark.fast]

HOST = "fast-tier@localhost"


@pytest.fixture
def worker(odoo_stack):
    """The worker's modules, run in this process; the connections they keep are closed afterwards."""
    from odoo.addons.celery_task import task_record
    from odoo.addons.celery_task.worker import connections, relay, runner

    yield types.SimpleNamespace(connections=connections, relay=relay, runner=runner, record=task_record)
    connections.close_all()


@contextlib.contextmanager
def claiming(stack, row, task_uuid=None):
    """Claim ``row`` as the pool process that runs its message does: yields (the task, the claimed row or None)."""
    from odoo.addons.celery_task import task_specs
    from odoo.addons.celery_task.worker import claim

    task = stack.app.tasks[row["name"]]
    task.push_request(id=task_uuid or row["uuid"], hostname=HOST, args=[stack.db, row["id"]], kwargs={})
    try:
        with claim.claimed(stack.registry, task, task_specs.SPECS[row["name"]], row["id"]) as claimed:
            yield task, claimed
    finally:
        task.pop_request()


@contextlib.contextmanager
def other_session(stack):
    """A connection of another process: its advisory locks are not ours."""
    connection = psycopg2.connect(dbname=stack.db)
    connection.autocommit = True
    try:
        yield connection.cursor()
    finally:
        connection.close()


def held_locks(stack, worker):
    """Task record ids whose lock this process's lock connection holds."""
    with worker.connections.lock_connection(stack.db).cursor() as cr:
        cr.execute(
            "SELECT objid::int FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND pid = pg_backend_pid()",
            [worker.record.LOCK_CLASS],
        )
        return {row[0] for row in cr.fetchall()}


def cancel(stack, row):
    """As a Celery manager's Cancel does, without the revoke (the fast tier has no broker)."""
    stack.set_task_columns(row["id"], state="cancelled", done_at=datetime.datetime.utcnow())


def spec_of(row):
    from odoo.addons.celery_task import task_specs

    return task_specs.SPECS[row["name"]]


def test_a_claim_takes_the_lock_and_starts_the_row(odoo_stack, worker):
    row = odoo_stack.unpublished_call("bump", odoo_stack.new_item())
    with claiming(odoo_stack, row) as (_, claimed):
        assert (claimed["id"], claimed["attempts"], claimed["login"]) == (row["id"], 1, "__system__")
        assert row["id"] in held_locks(odoo_stack, worker)
        task_row = odoo_stack.task_row(row["uuid"])
        assert (task_row["state"], task_row["worker_host"]) == ("started", HOST)
        assert task_row["sent_at"] is not None, "a claim of a message the relay sent marks it sent"


def test_a_row_locked_by_another_worker_is_skipped(odoo_stack, worker, caplog):
    row = odoo_stack.unpublished_call("bump", odoo_stack.new_item())
    with other_session(odoo_stack) as other, caplog.at_level(logging.INFO):
        other.execute("SELECT pg_advisory_lock(%s, %s)", [worker.record.LOCK_CLASS, row["id"]])
        with claiming(odoo_stack, row) as (_, claimed):
            assert claimed is None
    assert "is locked by another worker, which runs it or has just run it; duplicate skipped" in caplog.text
    assert odoo_stack.task_row(row["uuid"])["state"] == "pending", "the claim changed nothing"


def test_a_cancelled_row_is_not_claimed_and_its_lock_is_released(odoo_stack, worker, caplog):
    row = odoo_stack.unpublished_call("bump", odoo_stack.new_item())
    cancel(odoo_stack, row)
    with caplog.at_level(logging.INFO), claiming(odoo_stack, row) as (_, claimed):
        assert claimed is None
    assert f"[{row['uuid']}] is already cancelled; message acknowledged and skipped" in caplog.text
    task_row = odoo_stack.task_row(row["uuid"])
    assert (task_row["state"], task_row["attempts"]) == ("cancelled", 0)
    assert row["id"] not in held_locks(odoo_stack, worker)


def test_a_finish_after_a_cancel_commits_nothing_the_method_did(odoo_stack, worker):
    item_id = odoo_stack.new_item()
    row = odoo_stack.unpublished_call("bump", item_id, 5)
    with pytest.raises(Ignore), claiming(odoo_stack, row) as (task, claimed):
        cancel(odoo_stack, row)
        worker.runner.execute(odoo_stack.registry, task, spec_of(row), claimed)
    assert odoo_stack.task_row(row["uuid"])["state"] == "cancelled"
    assert odoo_stack.item(item_id)["value"] == 0, "the method ran, and its effects were rolled back"
    assert row["id"] not in held_locks(odoo_stack, worker), "a task that did not end done is unlocked"


def test_a_finish_after_another_worker_claimed_the_task_again_commits_nothing(odoo_stack, worker, caplog):
    item_id = odoo_stack.new_item()
    row = odoo_stack.unpublished_call("bump", item_id, 5)
    with pytest.raises(Ignore), caplog.at_level(logging.INFO), claiming(odoo_stack, row) as (task, claimed):
        # as when the server ended this worker's sessions (a host cut off) and another host claimed it
        odoo_stack.set_task_columns(row["id"], attempts=2, worker_host="other@host")
        worker.runner.execute(odoo_stack.registry, task, spec_of(row), claimed)
    task_row = odoo_stack.task_row(row["uuid"])
    assert (task_row["state"], task_row["attempts"], task_row["worker_host"]) == ("started", 2, "other@host")
    assert odoo_stack.item(item_id)["value"] == 0, "the method ran, and its effects were rolled back"
    assert "is no longer this worker's claim (attempt 1)" in caplog.text
    assert "the task is now started, attempt 2 on other@host; nothing it did commits" in caplog.text


def test_a_task_the_relay_published_again_waits_as_sent_pending_not_republished_each_round(odoo_stack, worker):
    now = datetime.datetime.utcnow()
    old = now - datetime.timedelta(minutes=10)
    queue = f"ct-fast-{uuid.uuid4().hex[:8]}"
    rows = {}
    for state, columns in (("started", {"started_at": old}), ("retry", {"eta": old})):
        row = odoo_stack.unpublished_call("bump", odoo_stack.new_item())
        odoo_stack.set_task_columns(row["id"], queue=queue, state=state, **columns)
        rows[state] = row
    ids = [row["id"] for row in rows.values()]
    cutoff = now - datetime.timedelta(minutes=1)
    with worker.connections.main_process_cursor(odoo_stack.db) as cr:
        cr.execute(worker.record.STRANDED_TASKS, {"cutoff": cutoff, "limit": 100, "queues": [queue]})
        assert sorted(row["id"] for row in cr.fetchall()) == sorted(ids), "its worker is gone, its eta passed"
        cr.execute(worker.record.MARK_RESENT, {"ids": ids})
        cr.execute(worker.record.STRANDED_TASKS, {"cutoff": cutoff, "limit": 100, "queues": [queue]})
        assert cr.fetchall() == [], "published again once: its message waits in its queue"
        cr.execute(worker.record.LOST_TASKS, {"cutoff": cutoff, "limit": 100, "queues": [queue]})
        assert cr.fetchall() == [], "and is not taken for lost before celery_relay_resend_after"
    states = {state: odoo_stack.task_row(row["uuid"]) for state, row in rows.items()}
    assert {state: row["state"] for state, row in states.items()} == {"started": "pending", "retry": "pending"}
    assert all(task_row["sent_at"] > old for task_row in states.values())


def test_a_claim_reads_its_records_through_the_primary_key_however_big_their_table(odoo_stack, worker):
    from odoo.addons.celery_task.worker import claim

    statement = claim._claim_statement(odoo_stack.registry, "task.test.item")
    values = dict.fromkeys(["uuid", "name", "host", "release"], None)
    values.update(lock_class=worker.record.LOCK_CLASS, id=1, model="task.test.item")
    with odoo_stack.env() as env:
        env.cr.execute("INSERT INTO task_test_item (value) SELECT 0 FROM generate_series(1, 20000) RETURNING id")
        added = [row[0] for row in env.cr.fetchall()]
        env.cr.execute("ANALYZE task_test_item")
    try:
        with odoo_stack.env() as env:
            env.cr.execute(f"EXPLAIN {statement}", values)
            plan = "\n".join(row[0] for row in env.cr.fetchall())
    finally:
        with odoo_stack.env() as env:
            env.cr.execute("DELETE FROM task_test_item WHERE id = ANY(%s)", [added])
    assert "Seq Scan on task_test_item" not in plan, plan
    assert "task_test_item_pkey" in plan, plan


def test_a_claimed_row_runs_and_finishes_done_with_its_effects(odoo_stack, worker):
    item_id = odoo_stack.new_item()
    row = odoo_stack.unpublished_call("bump", item_id, 5)
    with claiming(odoo_stack, row) as (task, claimed):
        result = worker.runner.execute(odoo_stack.registry, task, spec_of(row), claimed)
    assert result == {"ids": [item_id], "values": [5]}
    task_row = odoo_stack.task_row(row["uuid"])
    assert (task_row["state"], task_row["result"]) == ("done", f'{{"ids":[{item_id}],"values":[5]}}')
    assert task_row["done_at"] is not None
    assert odoo_stack.item(item_id)["value"] == 5
    assert row["id"] in held_locks(odoo_stack, worker), "a done task's lock waits for the next claim"


def test_a_finished_task_records_when_it_ended_not_when_its_transaction_began(odoo_stack, worker):
    row = odoo_stack.unpublished_call("slow_bump", odoo_stack.new_item(), 0.5)
    with claiming(odoo_stack, row) as (task, claimed):
        worker.runner.execute(odoo_stack.registry, task, spec_of(row), claimed)
    task_row = odoo_stack.task_row(row["uuid"])
    assert (task_row["done_at"] - task_row["started_at"]).total_seconds() >= 0.5


def test_a_message_that_does_not_match_its_record_is_rejected(odoo_stack, worker):
    row = odoo_stack.unpublished_call("bump", odoo_stack.new_item())
    forged = str(uuid.uuid4())
    with pytest.raises(Reject) as rejected, claiming(odoo_stack, row, task_uuid=forged):
        pytest.fail("a forged message was claimed")
    assert f"[{forged}] does not match task record {row['id']}" in str(rejected.value.reason)
    with pytest.raises(Reject) as rejected, claiming(odoo_stack, {**row, "id": 2_000_000_000}):
        pytest.fail("a message for no record was claimed")
    assert f"no task record 2000000000 in database {odoo_stack.db}" in str(rejected.value.reason)
    assert odoo_stack.task_row(row["uuid"])["state"] == "pending"


def test_the_relay_selects_stranded_and_lost_tasks_only(odoo_stack, worker):
    queue = f"ct-fast-{uuid.uuid4().hex[:8]}"
    now = datetime.datetime.utcnow()
    old, future = now - datetime.timedelta(minutes=10), now + datetime.timedelta(minutes=10)
    rows = {
        "never sent": {"create_date": old, "write_date": old},
        "just committed": {},
        "released just now": {"create_date": old, "write_date": now},
        "retry due": {"state": "retry", "eta": old},
        "retry later": {"state": "retry", "eta": future},
        "started, worker gone": {"state": "started", "started_at": old},
        "started, worker alive": {"state": "started", "started_at": old},
        "done": {"state": "done", "done_at": now, "create_date": old},
        "sent long ago": {"sent_at": old, "create_date": old},
        "sent just now": {"sent_at": now, "create_date": old},
        "sent long ago, due later": {"sent_at": old, "eta": future, "create_date": old},
        "other queue": {"create_date": old, "write_date": old, "queue": f"{queue}-other"},
    }
    ids = {}
    for label, columns in rows.items():
        row = odoo_stack.unpublished_call("bump", odoo_stack.new_item())
        odoo_stack.set_task_columns(row["id"], **{"queue": queue, **columns})
        ids[row["id"]] = label
    cutoff = now - datetime.timedelta(minutes=1)
    alive = next(record_id for record_id, label in ids.items() if label == "started, worker alive")
    with other_session(odoo_stack) as other, worker.connections.main_process_cursor(odoo_stack.db) as cr:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [worker.record.LOCK_CLASS, alive])
        cr.execute(worker.record.STRANDED_TASKS, {"cutoff": cutoff, "limit": 100, "queues": [queue]})
        stranded = {ids[row["id"]]: worker.relay.is_running(cr, row["id"]) for row in cr.fetchall()}
        cr.execute(worker.record.UNSTARTED_QUEUES, {"cutoff": cutoff, "queues": [queue, f"{queue}-other"]})
        unstarted = [row["queue"] for row in cr.fetchall()]
        cr.execute(worker.record.LOST_TASKS, {"cutoff": cutoff, "limit": 100, "queues": [queue]})
        lost = {ids[row["id"]] for row in cr.fetchall()}
    assert stranded == {
        "never sent": False,
        "retry due": False,
        "started, worker gone": False,
        "started, worker alive": True,
    }
    assert unstarted == [queue] and lost == {"sent long ago"}


def test_the_relay_cancels_expired_tasks_that_never_started(odoo_stack, worker):
    past = datetime.datetime.utcnow() - datetime.timedelta(seconds=5)
    expired = {}
    for state in ("pending", "retry", "started"):
        row = odoo_stack.unpublished_call("bump", odoo_stack.new_item())
        odoo_stack.set_task_columns(row["id"], state=state, expires_at=past)
        expired[state] = row["uuid"]
    with worker.connections.main_process_cursor(odoo_stack.db) as cr:
        cr.execute(worker.record.EXPIRE_TASKS)
    states = {state: odoo_stack.task_row(task_uuid) for state, task_uuid in expired.items()}
    assert {state: row["state"] for state, row in states.items()} == {
        "pending": "cancelled",
        "retry": "cancelled",
        "started": "started",
    }
    assert states["pending"]["exc_message"] == "the task expired before a worker ran it"


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        (["DB", True], {}, "the record id as a positive integer"),
        ([123, 5], {}, "the database as a non-empty string"),
        (["DB", "5"], {}, "the record id as a positive integer"),
        (["DB", 5, 6], {}, "expected args [database, task record id], got"),
        ({}, {}, "expected args [database, task record id], got args={}"),
        ([], {}, "expected args [database, task record id], got args=[]"),
        (["DB", 5], {"injected": 1}, "and no kwargs"),
    ],
    ids=["id-is-bool", "db-not-string", "id-is-string", "three-args", "dict", "empty", "kwargs"],
)
def test_one_message_shape_check(odoo_stack, args, kwargs, problem):
    from odoo.addons.celery_task.exceptions import MalformedMessage
    from odoo.addons.celery_task.task_record import message_target

    with pytest.raises(MalformedMessage) as refused:
        message_target(args, kwargs)
    assert problem in str(refused.value)
    assert message_target([odoo_stack.db, 5], {}) == (odoo_stack.db, 5)

"""A decorated method called in Odoo runs in a real worker, on Redis and on RabbitMQ."""

import collections
import datetime
import decimal
import json
import subprocess
import time
import urllib.request
import uuid

import pytest

import harness

pytestmark = pytest.mark.odoo


def test_async_call_returns_result_once_committed(stack, broker):
    item_id = stack.new_item()
    with stack.env() as env:
        result = env["task.test.item"].browse(item_id).bump(amount=5)
        assert result.id, "the task id is known at once"
        env.cr.execute("SELECT state, name FROM celery_task WHERE uuid = %s", [result.id])
        assert env.cr.fetchone() == ("pending", "task.test.item.bump")
        assert stack.task_row(result.id) is None, "nothing is visible before the caller commits"
    assert result.get(timeout=30) == {"ids": [item_id], "values": [5]}
    row = stack.wait_row(result.id)
    assert (row["state"], row["attempts"], row["worker_host"]) == ("done", 1, stack.workers[broker].name)
    assert row["sent_at"] is not None and row["started_at"] is not None and row["done_at"] is not None
    assert stack.item(item_id)["value"] == 5


def test_publisher_thread_sends_after_commit_and_marks_sent_in_batches(stack):
    """Calls to a queue no worker reads: each message reaches the broker, each record is marked sent."""
    import redis

    from odoo.addons.celery_task.publisher import publisher

    queue = f"ct-test-{stack.run_id}-unconsumed"
    stack.point_caller(harness.BROKERS["redis"], queue)
    broker = redis.Redis.from_url(harness.BROKERS["redis"])
    try:
        item_id = stack.new_item()
        uuids = []
        for _ in range(20):
            with stack.env() as env:
                uuids.append(env["task.test.item"].browse(item_id).bump().id)
        assert publisher.wait_idle(timeout=30), "the publisher thread finished"
        rows = [stack.task_row(task_uuid) for task_uuid in uuids]
        assert all(row["state"] == "pending" and row["sent_at"] for row in rows), "published and marked sent"
        assert len({row["sent_at"] for row in rows}) < len(rows), "marked in batches, not one update per call"
        queued = [message["headers"]["id"] for message in harness.redis_queue(broker, queue)]
        assert sorted(queued) == sorted(uuids), "each committed call is on the broker once"
    finally:
        harness.delete_redis_queue(broker, queue)
        with stack.env() as env:
            env.cr.execute("DELETE FROM celery_task WHERE queue = %s", [queue])


def test_a_script_that_exits_right_after_its_commits_publishes_its_calls_first(stack, redis):
    """As ``odoo-bin shell`` or a cron script: when its process ends, its calls are on the broker already."""
    import redis as redis_client

    queue = f"ct-test-{stack.run_id}-exit"
    broker = redis_client.Redis.from_url(harness.BROKERS["redis"])
    item_id = stack.new_item()
    # No result backend, as by default: a backend loads the broker's client library early, and hides the fault.
    env = {**redis.env, "ODOO_CELERY_DEFAULT_QUEUE": queue, "ODOO_CELERY_BACKEND_URL": ""}
    done = harness.run_caller_script(stack, "exit_right_after_commit.py", item_id, env)
    try:
        assert done.returncode == 0 and "committed" in done.stdout, done.stderr[-3000:]
        assert "can't register atexit" not in done.stderr and "broker refused" not in done.stderr, done.stderr[-3000:]
        assert len(harness.redis_queue(broker, queue)) == 5, "all five were on the broker when the script ended"
        with stack.env() as env:
            env.cr.execute("SELECT count(sent_at) FROM celery_task WHERE queue = %s", [queue])
            assert env.cr.fetchone()[0] == 5, "and marked sent: the relay has nothing to do"
    finally:
        harness.delete_redis_queue(broker, queue)
        with stack.env() as env:
            env.cr.execute("DELETE FROM celery_task WHERE queue = %s", [queue])


def test_a_done_task_keeps_its_lock_only_until_its_process_claims_again(stack, redis):
    from odoo.addons.celery_task.task_record import LOCK_CLASS

    worker = stack.workers["redis"]
    item_id = stack.new_item()
    finished = []
    for _ in range(6):
        result = stack.call("bump", item_id)
        finished.append(stack.wait_row(result.id)["id"])
    with stack.env() as env:
        env.cr.execute(
            """SELECT a.application_name, l.objid::int FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.classid = %s AND a.application_name = ANY(%s)
                  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
            [LOCK_CLASS, [f"odoo-{pid}" for pid in worker.child_pids()]],
        )
        held = env.cr.fetchall()
    assert finished[-1] in [record_id for _, record_id in held], (
        "the last one's lock waits for its process's next claim"
    )
    per_process = collections.Counter(process for process, _ in held)
    assert set(per_process.values()) <= {1}, f"at most one lock per pool process (the one it ran last): {held}"
    assert stack.item(item_id)["value"] == 6


def test_worker_sees_cache_changes_another_process_signals(stack, redis):
    key = f"celery_task_test.signaled.{uuid.uuid4().hex}"
    item_id = stack.new_item()

    def set_parameter(value):
        # manage_changes signals after the inner cursor committed, as a request does
        with stack.registry.manage_changes(), stack.env() as env:
            env["ir.config_parameter"].set_param(key, value)

    def read_in_worker(times):
        with stack.env() as env:
            results = [env["task.test.item"].browse(item_id).read_parameter(key) for _ in range(times)]
        return [result.get(timeout=30) for result in results]

    set_parameter("before")
    assert read_in_worker(6) == ["before"] * 6, "both pool processes now hold the value in their cache"
    set_parameter("after")
    assert read_in_worker(6) == ["after"] * 6, "every pool process dropped its cache on the signal"


def test_rollback_publishes_nothing(stack, broker):
    item_id = stack.new_item()
    with stack.env() as env:
        rolled_back = env["task.test.item"].browse(item_id).bump(amount=100)
        env.cr.rollback()
    sentinel = stack.call("bump", item_id, amount=1)
    sentinel.get(timeout=30)
    assert stack.task_row(rolled_back.id) is None
    assert stack.item(item_id)["value"] == 1, "only the committed call ran"
    assert rolled_back.state == "PENDING", "the broker never saw the rolled-back task"


def test_progress_is_read_back_through_async_result(stack, broker):
    item_id = stack.new_item()
    result = stack.call("report_progress", item_id, steps=3, pause=0.5)
    seen = []

    def progress():
        if result.state == "PROGRESS" and result.info["current"] not in seen:
            seen.append(result.info["current"])
        return len(seen) >= 2 or result.ready()

    harness.wait_for(progress, 30, interval=0.05, what="PROGRESS states")
    assert result.get(timeout=30) == 3
    assert seen and seen == sorted(seen) and set(seen) <= {1, 2, 3}
    with stack.env() as env:
        env.cr.execute(
            "SELECT p.state, p.current, p.total, p.message FROM celery_task_progress p "
            "JOIN celery_task t ON t.id = p.task_id WHERE t.uuid = %s",
            [result.id],
        )
        assert env.cr.fetchone() == ("PROGRESS", 3.0, 3.0, "step 3")


def test_seed_example_present_voucher(stack, broker):
    with stack.env() as env:
        admin = env.ref("base.user_admin")
        before = admin.voucher_total
        result = admin.present_voucher(amount=10)
    assert result.id
    assert result.get(timeout=30) == before + 10


def test_arguments_and_context_round_trip(stack, redis):
    item_id = stack.new_item()
    day = datetime.date(2026, 2, 28)
    moment = datetime.datetime(2026, 2, 28, 13, 45, 7, 120000)
    amount = decimal.Decimal("12.345")
    with stack.env(context={"lang": "en_US", "tz": "Europe/Brussels", "probe": [1, "two"]}) as env:
        items = env["task.test.item"].browse(item_id)
        result = items.echo(day, moment, amount, items, label="x", when=moment)
    with stack.env() as env:
        echoed = stack.serialization.from_json_safe(result.get(timeout=30), env)
        assert echoed["args"] == [day, moment, amount, env["task.test.item"].browse(item_id)]
        assert echoed["kwargs"] == {"label": "x", "when": moment}
        assert echoed["types"] == ["date", "datetime", "Decimal", "task.test.item", "label:str", "when:datetime"]
        expected_context = {"lang": "en_US", "tz": "Europe/Brussels", "probe": [1, "two"], "allowed_company_ids": None}
        assert echoed["context"] == expected_context
        assert (echoed["uid"], echoed["su"]) == (1, True)


def test_registered_names_are_listed_by_inspect(stack, redis):
    registered = stack.app.control.inspect(destination=[redis.name], timeout=5).registered()
    names = set(registered[redis.name])
    expected = {
        "task.test.item.bump",
        "task.test.item.echo",
        "task.test.item.progress",
        "task.test.item.in_other_db",
        "res.users.present_gift",
    }
    assert expected <= names
    assert "crossed a fork" not in redis.log(), "no database connection was copied into a pool child"


def test_flower_lists_the_task_with_readable_args(stack, redis):
    port = harness.free_port()
    flower = subprocess.Popen(
        [*redis.entry, "flower", f"--port={port}", "--address=127.0.0.1"],
        env={**redis.env, "FLOWER_UNAUTHENTICATED_API": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        harness.wait_for(lambda: harness.port_open("127.0.0.1", port), 60, what="Flower to listen")
        item_id = stack.new_item()

        def listed_whole():
            """Call, then look the task up; Flower's event receiver starts a little after its port."""
            result = stack.call("bump", item_id, amount=2)
            result.get(timeout=30)
            time.sleep(0.5)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=5) as response:
                task = json.load(response).get(result.id)
            return task if task and task["name"] and task["state"] == "SUCCESS" else None

        task = harness.wait_for(listed_whole, 60, interval=0.5, what="Flower to list a whole task")
    finally:
        flower.terminate()
        flower.wait(10)
    assert task["name"] == "task.test.item.bump"
    assert task["args"] == f"task.test.item({item_id},).bump(amount=2)"
    assert task["state"] == "SUCCESS" and task["worker"] == redis.name


def test_runs_against_another_database(stack, redis):
    name = f"made-in-other-{uuid.uuid4().hex[:8]}"
    with stack.env() as env:
        result = env["task.test.item"].create_in_other_db(name)
    created_id = result.get(timeout=30)
    with stack.env(dbname=stack.other_db) as env:
        created = env["task.test.item"].browse(created_id)
        assert created.name == name
        env.cr.execute("SELECT state FROM celery_task WHERE uuid = %s", [result.id])
        assert env.cr.fetchone() == ("done",), "the target database holds the exactly-once marker"
    with stack.env() as env:
        assert not env["task.test.item"].search([("name", "=", name)]), "nothing was created in the caller's db"
    assert stack.wait_row(result.id)["state"] == "done"

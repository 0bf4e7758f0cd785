"""Every bad input ends with a precise error in the worker's log and on the task record."""

import json
import uuid

import pytest

import harness

pytestmark = pytest.mark.odoo


@pytest.fixture
def worker(stack, broker):
    """Each test runs on Redis and on RabbitMQ, against that broker's worker."""
    return stack.workers[broker]


def forge(stack, method="bump", call_args=(), **columns):
    """Commit a task record as the decorator writes it, then alter ``columns`` as a foreign writer would.

    Returns the row; nothing is published (the caller's own post-commit publish is dropped).
    """
    from odoo.addons.celery_task.task_record import TaskMessage

    item_id = stack.new_item()
    row = stack.unpublished_call(method, item_id, *call_args)
    stack.set_task_columns(row["id"], **columns)
    row = stack.task_row(row["uuid"])
    return row, TaskMessage.from_row(stack.db, row), item_id


def publish(item):
    from odoo.addons.celery_task.app import publish_all

    assert publish_all([item]) == [item]


def send_raw(stack, name, args, kwargs=None, task_id=None):
    task_id = task_id or str(uuid.uuid4())
    stack.app.send_task(name, args=args, kwargs=kwargs or {}, task_id=task_id, queue=stack.queue(stack.broker))
    return task_id


def wait_log(worker, text, timeout=20):
    harness.wait_for(lambda: text in worker.log(), timeout, what=f"{text!r} in {worker.name}'s log")


def assert_failed(stack, task_uuid, exc_type, *fragments):
    row = stack.wait_row(task_uuid)
    assert row["state"] == "failed", row
    assert row["exc_type"].endswith(exc_type), row["exc_type"]
    for fragment in fragments:
        assert fragment in row["exc_message"], row["exc_message"]
    assert row["traceback"]
    return row


def test_unknown_task_name(stack, worker):
    row, item, item_id = forge(stack, name="task.test.item.vanished")
    item.task_name = "task.test.item.vanished"
    publish(item)
    assert_failed(stack, row["uuid"], "UnknownTask", "task.test.item.vanished", "nothing ran")
    wait_log(worker, "Received unregistered task of type 'task.test.item.vanished'")
    assert stack.item(item_id)["value"] == 0


def test_unknown_model(stack, worker):
    row, item, _ = forge(stack, model_name="no.such.model")
    publish(item)
    assert_failed(stack, row["uuid"], "UnknownTask", "'no.such.model' does not exist")


def test_method_that_is_not_decorated(stack, worker):
    row, item, item_id = forge(stack, method_name="not_a_task")
    publish(item)
    assert_failed(stack, row["uuid"], "NotATask", "task.test.item.not_a_task is not decorated")
    assert stack.item(item_id)["note"] is False, "the undecorated method never ran"


def test_records_deleted_before_the_run(stack, worker):
    item_id = stack.new_item()
    with stack.env() as env:
        item = env["task.test.item"].browse(item_id)
        result = item.bump(amount=3)
        item.unlink()
    assert_failed(stack, result.id, "RecordsGone", f"task.test.item({item_id},) no longer exist")
    with pytest.raises(Exception, match="no longer exist"):
        result.get(timeout=10)


def test_user_deactivated_before_the_run(stack, worker):
    from odoo import api

    user_id = stack.new_user("Soon gone", "base.group_system")
    item_id = stack.new_item()
    with stack.env(uid=user_id) as env:
        result = env["task.test.item"].browse(item_id).bump()
        as_root = env(user=api.SUPERUSER_ID)
        as_root["res.users"].browse(user_id).active = False
    assert_failed(stack, result.id, "InactiveUser", "is deactivated")
    assert stack.item(item_id)["value"] == 0


def test_stored_arguments_that_do_not_fit(stack, worker):
    row, item, item_id = forge(stack, args=json.dumps({"args": [1, 2, 3], "kwargs": {}}))
    publish(item)
    assert_failed(stack, row["uuid"], "BadArguments", "task.test.item.bump", "too many positional arguments")
    assert stack.item(item_id)["value"] == 0


def test_wrong_arguments_are_refused_at_call_time(stack, worker):
    item_id = stack.new_item()
    with stack.env() as env:
        item = env["task.test.item"].browse(item_id)
        with pytest.raises(TypeError, match=r"task\.test\.item\.bump.*too many positional"):
            item.bump(1, 2, 3)
        with pytest.raises(TypeError, match=r"task\.test\.item\.bump.*unexpected keyword argument 'nope'"):
            item.bump(nope=1)
        item.name = "still writable"
    with stack.env() as env:
        assert env["task.test.item"].browse(item_id).name == "still writable", "the caller's transaction is unharmed"
        assert not env["celery.task"].search_count([("record_ids", "=", json.dumps([item_id]))])


def test_unserializable_argument_is_refused_at_call_time(stack, worker):
    item_id = stack.new_item()
    with stack.env() as env:
        item = env["task.test.item"].browse(item_id)
        with pytest.raises(
            TypeError, match=r"task\.test\.item\.echo arguments\['args'\]\[0\] is not JSON-serializable: set"
        ):
            item.echo({1, 2})
        with pytest.raises(TypeError, match="non-string key 1"):
            item.echo(mapping={1: "one"})
        item.name = "committed anyway"
    with stack.env() as env:
        assert env["task.test.item"].browse(item_id).name == "committed anyway"
        assert not env["celery.task"].search_count([("record_ids", "=", json.dumps([item_id]))])


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(["only-one"], {}), ([None, "1"], {}), ([None, 1], {"injected": "yes"}), ([], {})],
    ids=["too-few", "id-not-int", "extra-kwargs", "empty"],
)
def test_malformed_message_is_rejected(stack, worker, args, kwargs):
    args = [stack.db if value is None else value for value in args]
    task_id = send_raw(stack, "task.test.item.bump", args, kwargs)
    wait_log(worker, f"task.test.item.bump[{task_id}]: expected args [database, task record id]")


def test_tampered_message_runs_nothing(stack, worker):
    row, item, item_id = forge(stack)
    forged_name = send_raw(stack, "task.test.item.fail", [stack.db, row["id"]], task_id=row["uuid"])
    wait_log(worker, f"task.test.item.fail[{forged_name}] does not match task record {row['id']}")
    forged_id = send_raw(stack, "task.test.item.bump", [stack.db, row["id"]])
    wait_log(worker, f"task.test.item.bump[{forged_id}] does not match task record {row['id']}")
    missing = send_raw(stack, "task.test.item.bump", [stack.db, 2_000_000_000])
    wait_log(worker, f"task.test.item.bump[{missing}]: no task record 2000000000 in database {stack.db}")
    assert stack.task_row(row["uuid"])["state"] == "pending", "a forged message did not claim the real task"
    assert stack.item(item_id)["value"] == 0
    publish(item)
    assert stack.wait_row(row["uuid"])["state"] == "done", "the genuine message still runs it"
    assert stack.item(item_id)["value"] == 1


def test_database_the_worker_does_not_serve(stack, worker):
    task_id = send_raw(stack, "task.test.item.bump", ["ct_no_such_database", 1])
    wait_log(worker, "needs database 'ct_no_such_database', which this worker does not serve")
    assert task_id


def test_target_database_not_served_is_recorded(stack):
    single = stack.worker("redis", name=f"single-{stack.run_id}@localhost", queue=f"ct-test-{stack.run_id}-single")
    single.entry = [*single.entry, "-d", stack.db]
    stack.point_caller(stack.app.conf.broker_url, single.queue)
    single.start(stack.app)
    try:
        with stack.env() as env:
            result = env["task.test.item"].create_in_other_db("never")
        assert_failed(stack, result.id, "UnservedDatabase", f"needs database '{stack.other_db}'", "nothing ran")
    finally:
        single.stop()


def test_business_error_keeps_type_message_and_traceback(stack, worker):
    item_id = stack.new_item()
    result = stack.call("fail", item_id, "broken on purpose")
    row = assert_failed(stack, result.id, "odoo.exceptions.UserError", "broken on purpose")
    assert "raise UserError(message)" in row["traceback"]
    assert row["attempts"] == 1, "a business error is not retried unless asked"
    assert stack.item(item_id)["note"] is False, "the method's writes were rolled back"


def publish_body(stack, name, args, kwargs, task_id=None):
    """Publish a message with exactly this body, whatever Celery's own checks would refuse to send."""
    task_id = task_id or str(uuid.uuid4())
    headers = {"lang": "py", "task": name, "id": task_id, "root_id": task_id, "argsrepr": "x"}
    body = [args, kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    with stack.app.producer_or_acquire() as producer:
        producer.publish(body, routing_key=stack.queue(stack.broker), serializer="json", headers=headers)
    return task_id


MALFORMED_SHAPES = {
    "[db, True]": lambda db, record_id: [db, True],
    "[123, 5]": lambda db, record_id: [123, record_id],
    '[db, "5"]': lambda db, record_id: [db, str(record_id)],
    "[db, 5, 6]": lambda db, record_id: [db, record_id, 6],
    "{}": lambda db, record_id: {},
    "[]": lambda db, record_id: [],
}


def test_each_malformed_shape_is_rejected_by_the_pool_and_the_main_process(stack, worker):
    """Under the task's name the pool checks the shape; under an unregistered name, the main process."""
    row, message, item_id = forge(stack)
    pool, main = {}, {}
    for label, shape in MALFORMED_SHAPES.items():
        args = shape(stack.db, row["id"])
        pool[label] = publish_body(stack, "task.test.item.bump", args, {})
        main[label] = publish_body(stack, "task.test.item.unregistered", args, {})
    for label, task_id in pool.items():
        wait_log(worker, f"task.test.item.bump[{task_id}]: expected args [database, task record id]")
        line = next(line for line in worker.log().splitlines() if f"[{task_id}]: expected" in line)
        assert "message rejected, nothing ran" in line and "got args=" in line, (label, line)
    for label, task_id in main.items():
        wait_log(worker, f"task.test.item.unregistered[{task_id}]: no decorated method is registered")
        line = next(line for line in worker.log().splitlines() if f"unregistered[{task_id}]" in line)
        assert "expected args [database, task record id]" in line and "no task record to update" in line, (label, line)
    assert stack.task_row(row["uuid"])["state"] == "pending", "no shape touched the real record"
    assert stack.item(item_id)["value"] == 0
    publish(message)
    assert stack.wait_row(row["uuid"])["state"] == "done", "the worker goes on: the genuine message runs"
    assert stack.item(item_id)["value"] == 1


def test_truncated_message_body_is_rejected(stack, worker):
    """A body cut in the middle never decodes: Celery logs it and drops it; nothing runs."""
    task_id = str(uuid.uuid4())
    headers = {"lang": "py", "task": "task.test.item.bump", "id": task_id, "root_id": task_id, "argsrepr": "x"}
    with stack.app.producer_or_acquire() as producer:
        producer.publish(
            '[["db", 1], {}, {"callbacks": nu',
            routing_key=stack.queue(stack.broker),
            serializer=None,
            content_type="application/json",
            content_encoding="utf-8",
            headers=headers,
        )
    wait_log(worker, "Can't decode message body")

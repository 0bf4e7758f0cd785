"""Who sees and manages which task records, and what the UI's actions do with a real worker."""

import datetime
import uuid

import pytest

import harness

pytestmark = pytest.mark.odoo

PASSWORD = "celery-task-test-password"
ADMIN_UID = 2
PASSWORDS = {ADMIN_UID: "admin"}


@pytest.fixture(scope="module")
def users(stack):
    """A plain internal user, a Celery Manager who is no administrator, and the administrator."""
    plain = stack.new_user("Plain", "base.group_user", password=PASSWORD)
    manager = stack.new_user("Manager", "base.group_user", "celery_task.group_celery_manager", password=PASSWORD)
    return {"plain": plain, "manager": manager, "admin": ADMIN_UID}


def rpc(stack, uid, model, method, *args, **kwargs):
    return harness.rpc(stack.db, uid, PASSWORDS.get(uid, PASSWORD), model, method, *args, **kwargs)


def test_managers_see_every_task_plain_users_only_their_own(stack, users):
    from odoo.exceptions import AccessError

    item_id = stack.new_item()
    plain_task = stack.task_id(stack.call("bump", item_id, uid=users["plain"]))
    manager_task = stack.task_id(stack.call("bump", item_id, uid=users["manager"]))
    admin_task = stack.task_id(stack.call("bump", item_id))
    mine = {plain_task, manager_task, admin_task}
    seen_by_plain = set(rpc(stack, users["plain"], "celery.task", "search", [("id", "in", list(mine))]))
    seen_by_manager = set(rpc(stack, users["manager"], "celery.task", "search", [("id", "in", list(mine))]))
    assert seen_by_plain == {plain_task}
    assert seen_by_manager == mine
    [row] = rpc(stack, users["plain"], "celery.task", "read", [plain_task], ["state", "progress_percent", "user_id"])
    assert row["user_id"][0] == users["plain"]
    with pytest.raises(AccessError):
        rpc(stack, users["plain"], "celery.task", "read", [admin_task], ["state"])


@pytest.mark.parametrize("who", ["plain", "manager", "admin"])
def test_rpc_cannot_create_or_change_what_a_worker_runs(stack, users, who):
    from odoo.exceptions import AccessError

    uid = users[who]
    item_id = stack.new_item()
    task_id = stack.task_id(stack.call("bump", item_id, uid=uid))
    values = {"name": "task.test.item.bump", "uuid": str(uuid.uuid4()), "model_name": "res.users"}
    with pytest.raises(AccessError):
        rpc(stack, uid, "celery.task", "create", {**values, "method_name": "unlink", "record_ids": "[2]"})
    for field, value in [
        ("method_name", "unlink"),
        ("model_name", "res.users"),
        ("record_ids", "[2]"),
        ("args", '{"args": [], "kwargs": {"amount": 999}}'),
        ("context", '{"active_test": false}'),
        ("name", "task.test.item.fail"),
        ("uuid", str(uuid.uuid4())),
        ("user_id", 1),
    ]:
        with pytest.raises(AccessError):
            rpc(stack, uid, "celery.task", "write", [task_id], {field: value})
    with pytest.raises(AccessError):
        rpc(stack, uid, "celery.task", "copy", [task_id])
    with pytest.raises(AccessError, match="Private methods"):
        rpc(stack, uid, "celery.task", "_vacuum_finished")
    if who == "plain":
        with pytest.raises(AccessError):
            rpc(stack, uid, "celery.task", "write", [task_id], {"state": "pending"})
        with pytest.raises(AccessError):
            rpc(stack, uid, "celery.task", "action_cancel", [task_id])
        with pytest.raises(AccessError):
            rpc(stack, uid, "celery.periodic.task", "search", [])
    row = stack.task_row(_task_uuid(stack, task_id))
    assert (row["model_name"], row["method_name"], row["record_ids"]) == ("task.test.item", "bump", f"[{item_id}]")


def _task_uuid(stack, task_id):
    with stack.env() as env:
        return env["celery.task"].browse(task_id).uuid


def test_cancelled_pending_task_never_runs_and_requeue_runs_it_once(stack, redis, users):
    item_id = stack.new_item()
    with stack.env(uid=users["admin"]) as env:
        result = env["task.test.item"].browse(item_id).bump(amount=7)
        task = env["celery.task"].search([("uuid", "=", result.id)])
        task.with_user(users["manager"]).action_cancel()
        task_id = task.id
    cancelled = stack.wait_row(result.id, states=("cancelled",))
    assert cancelled["exc_message"] == "Cancelled by Manager; no worker will run it."
    sentinel_uuid = stack.call("bump", item_id, uid=users["admin"], amount=1).id
    stack.wait_row(sentinel_uuid)
    assert stack.item(item_id)["value"] == 1, "the cancelled task did not run"
    rpc(stack, users["manager"], "celery.task", "action_requeue", [task_id])
    new_uuid = _task_uuid(stack, task_id)
    assert new_uuid != result.id, "a requeued task goes out under a new Celery id"
    row = stack.wait_row(new_uuid)
    assert (row["state"], row["attempts"], row["exc_message"]) == ("done", 1, None)
    assert stack.item(item_id)["value"] == 8


def test_bulk_requeue_of_failed_tasks_and_refusals(stack, redis, users):
    from odoo.exceptions import UserError

    item_id = stack.new_item()
    results = [stack.call("fail", item_id, uid=users["admin"], message=f"broken {n}") for n in range(2)]
    failed = [(stack.task_id(result), result.id) for result in results]
    first_rows = [stack.wait_row(task_uuid) for _, task_uuid in failed]
    assert {row["state"] for row in first_rows} == {"failed"}
    done = stack.call("bump", item_id, uid=users["admin"])
    done_id, done_uuid = stack.task_id(done), done.id
    stack.wait_row(done_uuid)
    with pytest.raises(UserError, match="Only failed or cancelled tasks can be requeued"):
        rpc(stack, users["manager"], "celery.task", "action_requeue", [done_id, failed[0][0]])
    with pytest.raises(UserError, match="can be cancelled"):
        rpc(stack, users["manager"], "celery.task", "action_cancel", [done_id])
    rpc(stack, users["manager"], "celery.task", "action_requeue", [task_id for task_id, _ in failed])
    for (task_id, old_uuid), first in zip(failed, first_rows, strict=True):
        row = stack.wait_row(_task_uuid(stack, task_id))
        assert row["uuid"] != old_uuid
        assert row["state"] == "failed" and row["done_at"] >= first["done_at"]
        assert "broken" in row["exc_message"] and row["traceback"]


def test_cancel_revokes_a_running_task_with_terminate(stack, redis, users):
    item_id = stack.new_item()
    result = stack.call("slow_bump", item_id, uid=users["manager"], seconds=30)
    task_id, task_uuid = stack.task_id(result), result.id
    stack.wait_row(task_uuid, states=("started",))
    rpc(stack, users["manager"], "celery.task", "action_cancel", [task_id])
    harness.wait_for(lambda: f"Terminating {task_uuid}" in redis.log(), 15, what="the worker to terminate the task")
    row = stack.task_row(task_uuid)
    assert row["state"] == "cancelled" and "while running" in row["exc_message"]
    assert stack.item(item_id)["value"] == 0, "the terminated task committed nothing"


def test_progress_is_shown_on_the_task_while_it_runs(stack, redis, users):
    item_id = stack.new_item()
    result = stack.call("report_progress", item_id, uid=users["plain"], steps=4, pause=0.5)
    task_id, task_uuid = stack.task_id(result), result.id
    fields = ["state", "progress_percent", "progress_label", "progress_message"]
    seen = []

    def running_with_progress():
        [row] = rpc(stack, users["plain"], "celery.task", "read", [task_id], fields)
        if row["state"] == "started" and row["progress_label"]:
            seen.append(row)
        return len(seen) >= 2 or row["state"] == "done"

    harness.wait_for(running_with_progress, 30, interval=0.1, what="progress while the task runs")
    assert seen, "progress was visible before the task finished"
    assert 0 < seen[0]["progress_percent"] < 100
    assert seen[0]["progress_label"] in {"1 / 4", "2 / 4", "3 / 4"}
    assert seen[0]["progress_message"].startswith("step ")
    stack.wait_row(task_uuid)
    [row] = rpc(stack, users["plain"], "celery.task", "read", [task_id], fields)
    assert (row["state"], row["progress_percent"], row["progress_label"]) == ("done", 100.0, "4 / 4")


def test_open_records_action(stack, users):
    item_id = stack.new_item()
    task_id = stack.task_id(stack.call("bump", item_id, uid=users["plain"]))
    action = rpc(stack, users["plain"], "celery.task", "action_open_records", [task_id])
    assert (action["res_model"], action["res_id"]) == ("task.test.item", item_id)
    assert [list(view) for view in action["views"]] == [[False, "form"]]


def test_vacuum_deletes_finished_tasks_older_than_the_retention(stack, redis, users):
    item_id = stack.new_item()
    results = [stack.call("bump", item_id, uid=users["admin"]) for _ in range(4)]
    calls = [(stack.task_id(result), result.id) for result in results]
    stack.wait_told([task_uuid for _, task_uuid in calls])  # the relay's notice mark would conflict with the vacuum
    tasks = [task_id for task_id, _ in calls]
    old_done, old_failed, recent_done, old_pending = tasks
    long_ago = datetime.datetime.utcnow() - datetime.timedelta(days=11)
    with stack.env() as env:
        for task_id, state, done_at in [
            (old_done, "done", long_ago),
            (old_failed, "failed", long_ago),
            (recent_done, "done", datetime.datetime.utcnow()),
            (old_pending, "cancelled", None),
        ]:
            env.cr.execute("UPDATE celery_task SET state = %s, done_at = %s WHERE id = %s", [state, done_at, task_id])
        env["ir.config_parameter"].set_param("celery_task.retention_days", "10")
    with stack.env() as env:
        assert env["celery.task"]._vacuum_finished() >= 2
        assert set(env["celery.task"].browse(tasks).exists().ids) == {recent_done, old_pending}
        env["ir.config_parameter"].set_param("celery_task.retention_days", "30")
        cron = env.ref("celery_task.ir_cron_vacuum_tasks")
        assert cron.active and (cron.interval_number, cron.interval_type) == (1, "days")


def test_a_manager_moves_a_scheduled_task_by_rpc_a_plain_user_cannot(stack, redis, users):
    from odoo.exceptions import AccessError

    item_id = stack.new_item()
    with stack.env(uid=users["plain"]) as env:
        result = env["task.test.item"].browse(item_id).with_delay(countdown=3600).echo("moved")  # writes nothing
    task_id = stack.task_id(result)
    soon = (datetime.datetime.utcnow() + datetime.timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S")
    with pytest.raises(AccessError):
        rpc(stack, users["plain"], "celery.task", "write", [task_id], {"eta": soon})
    rpc(stack, users["manager"], "celery.task", "write", [task_id], {"eta": soon})
    row = stack.wait_row(result.id, timeout=30)
    assert (row["state"], row["exc_message"]) == ("done", None), "run at its new time, not in an hour"

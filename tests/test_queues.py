"""Pause and resume a queue, live, for every worker: calls still recorded, nothing started while paused (a
worker started later included), the relay leaves it alone, and after a resume everything runs once."""

import time

import pytest

import harness

pytestmark = pytest.mark.odoo

ADMIN_UID = 2


def queue_rpc(stack, method, *args):
    return harness.rpc(stack.db, ADMIN_UID, "admin", "celery.queue", method, *args)


def database_now(stack):
    with stack.env() as env:
        env.cr.execute("SELECT clock_timestamp() AT TIME ZONE 'UTC'")
        return env.cr.fetchone()[0]


def started(stack, uuids):
    with stack.env() as env:
        env.cr.execute("SELECT started_at FROM celery_task WHERE uuid = ANY(%s) AND started_at IS NOT NULL", [uuids])
        return sorted(at for (at,) in env.cr.fetchall())


def one_database(stack, worker):
    """``worker`` serving the test database alone (``-d``): it can stop consuming a queue paused there."""
    worker.entry = [*worker.entry, "-d", stack.db]
    return worker


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_paused_queue_starts_nothing_until_it_resumes(stack, fault_worker, broker, record_property):
    first = one_database(stack, fault_worker(broker))
    queue = first.queue
    stack.point_caller(harness.BROKERS[broker], queue)
    first.start(stack.app)
    item_ids = [stack.new_item() for _ in range(16)]
    with stack.env() as env:
        uuids = [item.slow_bump(0.3).id for item in env["task.test.item"].browse(item_ids[:12])]
    harness.wait_for(lambda: len(started(stack, uuids)) >= 4, 30, what="the queue to drain")
    queue_rpc(stack, "pause", [queue])
    paused_at = database_now(stack)
    with stack.env() as env:  # calls to a paused queue are still recorded
        late = [item.slow_bump(0.3).id for item in env["task.test.item"].browse(item_ids[12:])]
    assert all(stack.task_row(task_uuid)["state"] == "pending" for task_uuid in late)
    harness.wait_for(lambda: f"no longer consuming {queue} while it is paused" in first.log(), 10, what="the pause")
    second = one_database(stack, fault_worker(broker, queue=queue)).start(stack.app)  # started after the pause
    time.sleep(4)  # relay rounds (every second in the tests) and the publisher of due tasks
    before_resume = started(stack, uuids + late)
    assert all(at <= paused_at for at in before_resume), "no task started after the pause"
    left = [task_uuid for task_uuid in uuids + late if stack.task_row(task_uuid)["started_at"] is None]
    assert left, "some waited"
    queue_rpc(stack, "resume", [queue])
    resumed_at = database_now(stack)
    rows = [stack.wait_row(task_uuid, timeout=60) for task_uuid in uuids + late]
    assert {row["state"] for row in rows} == {"done"}
    assert [stack.item(item_id)["runs"] for item_id in item_ids] == [1] * 16, "each ran once"
    first_after = min(row["started_at"] for row in rows if row["uuid"] in left)
    while_paused = first.log().split("while it is paused")[-1].split("consuming")[0] + second.log()
    assert "stranded task(s)" not in while_paused and "due task(s)" not in while_paused, "the relay left it alone"
    pause_delay = max(0.0, (max(before_resume) - paused_at).total_seconds())
    resume_delay = (first_after - resumed_at).total_seconds()
    assert resume_delay < 5, f"the first task ran {resume_delay:.2f} s after the resume"
    figures = f"last start {pause_delay:.2f} s after the pause; first start {resume_delay:.2f} s after the resume"
    record_property("pause", figures)
    print(f"{broker}: {figures}")


def test_the_queues_view_lists_the_queue_with_its_load_and_consumers(stack, fault_worker):
    worker = fault_worker("redis")
    stack.point_caller(harness.BROKERS["redis"], worker.queue)
    with stack.env() as env:
        waiting = [item.bump().id for item in env["task.test.item"].browse([stack.new_item() for _ in range(3)])]
    action = queue_rpc(stack, "action_open_queues")
    assert action["res_model"] == "celery.queue"
    [queue_id] = queue_rpc(stack, "search", [("name", "=", worker.queue)])
    [row] = queue_rpc(stack, "read", [queue_id], ["waiting_count", "oldest_waiting", "consumers", "paused"])
    assert (row["waiting_count"], row["consumers"], row["paused"]) == (3, 0, False) and row["oldest_waiting"]
    worker.start(stack.app)
    for task_uuid in waiting:
        stack.wait_row(task_uuid)
    from odoo.addons.celery_task import app

    app.consumers(max_age=0)  # the view reads the workers' answer, kept 30 s: ask again now
    [row] = queue_rpc(stack, "read", [queue_id], ["waiting_count", "consumers"])
    assert (row["waiting_count"], row["consumers"]) == (0, 1)

"""Faults on real services: broker outages, killed workers, conflicts, limits, retries.

Each test runs its own worker on its own queue, so it can break it without touching the others.
"""

import datetime
import logging
import re
import time

import pytest

import harness

pytestmark = pytest.mark.odoo

CALLS_DURING_OUTAGE = 20


def running_slow_bump(stack):
    """A two-second task, once the worker has claimed it: (its item's id, its task row)."""
    item_id = stack.new_item()
    result = stack.call("slow_bump", item_id, seconds=2)
    return item_id, stack.wait_row(result.id, states=("started",))


def exactly_once(stack, item_ids):
    """(lost, run twice) counts over items that were each bumped once."""
    runs = [stack.item(item_id)["runs"] for item_id in item_ids]
    return sum(1 for count in runs if count == 0), sum(1 for count in runs if count > 1)


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_broker_down_at_call_time_then_back(stack, fault_worker, private_redis, broker):
    if broker == "redis":
        outage = private_redis()
        worker = fault_worker("redis", env={"ODOO_CELERY_BROKER_URL": outage.url})
        broker_url = outage.url
    else:
        outage = harness.BrokerOutage(harness.BROKERS["rabbitmq"]).start()
        worker = fault_worker("rabbitmq", env={"ODOO_CELERY_BROKER_URL": outage.url})
        broker_url = outage.url
    stack.point_caller(broker_url, worker.queue)
    worker.start(stack.app)
    outage.stop()
    try:
        item_ids = [stack.new_item() for _ in range(CALLS_DURING_OUTAGE)]
        uuids = [stack.call("bump", item_id).id for item_id in item_ids]
        rows = [stack.task_row(task_uuid) for task_uuid in uuids]
        assert all(row["state"] == "pending" and row["sent_at"] is None for row in rows), "committed, not sent"
    finally:
        outage.start()
    for task_uuid in uuids:
        stack.wait_row(task_uuid, timeout=90)
    assert exactly_once(stack, item_ids) == (0, 0)
    assert all(stack.task_row(task_uuid)["state"] == "done" for task_uuid in uuids)
    assert "published" in worker.log() and "stranded task(s)" in worker.log()


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_batch_the_broker_cannot_take_is_refused_whole_then_taken_once_it_is_back(stack, broker, caplog):
    from odoo.addons.celery_task import app
    from odoo.addons.celery_task.task_record import TaskMessage

    outage = harness.BrokerOutage(harness.BROKERS[broker]).start()
    queue = f"ct-test-{stack.run_id}-batch-{broker}"  # no worker consumes it
    stack.point_caller(outage.url, queue)
    messages = [TaskMessage.from_row(stack.db, stack.unpublished_call("bump", stack.new_item())) for _ in range(3)]
    outage.stop()
    try:
        with caplog.at_level(logging.WARNING, logger=app.__name__):
            assert app.publish_all(messages) == [], "the broker is down: none of them was taken"
        refused = [record.getMessage() for record in caplog.records if "broker refused" in record.getMessage()]
        assert [sum(message.task_uuid in line for line in refused) for message in messages] == [1, 1, 1], refused
        assert all("the relay will publish it" in line for line in refused)
        outage.start()
        assert app.publish_all(messages) == messages, "the same batch once the broker is back, on the next try"

        def queued():
            with stack.app.connection_for_read(harness.BROKERS[broker]) as connection:
                channel = connection.default_channel
                return channel.queue_declare(app.broker_queue(queue, stack.db), passive=True).message_count

        harness.wait_for(lambda: queued() == 3, 10, what="the three messages in their queue")
    finally:
        if outage.listener is not None:
            outage.stop()
        with stack.app.connection_for_write(harness.BROKERS[broker]) as connection:
            connection.default_channel.queue_delete(app.broker_queue(queue, stack.db))


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_worker_killed_mid_task_runs_again_once(stack, fault_worker, broker):
    first = fault_worker(broker)
    stack.point_caller(harness.BROKERS[broker], first.queue)
    first.start(stack.app)
    item_id = stack.new_item()
    task_uuid = stack.call("slow_bump", item_id, seconds=3).id
    stack.wait_row(task_uuid, states=("started",), timeout=30)
    first.kill()
    assert stack.task_row(task_uuid)["state"] == "started", "killed mid-task: nothing was committed"
    second = fault_worker(broker, name=first.name, queue=first.queue)
    second.start(stack.app)
    row = stack.wait_row(task_uuid, timeout=60)
    assert row["state"] == "done"
    assert row["attempts"] == 2
    assert stack.item(item_id)["value"] == 1 and stack.item(item_id)["runs"] == 1, "effects exist exactly once"


def test_kept_connections_the_server_terminated_are_replaced(stack, fault_worker):
    worker = fault_worker("redis")
    stack.point_caller(harness.BROKERS["redis"], worker.queue)
    worker.start(stack.app)
    item_id = stack.new_item()
    for _ in range(4):  # each pool process now keeps a lock connection and a task cursor
        assert stack.wait_row(stack.call("bump", item_id).id)["state"] == "done"
    with stack.env() as env:
        env.cr.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = ANY(%s)",
            # the task cursors' pool was made before the fork: they carry the main process's pid
            [[f"odoo-{pid}" for pid in (worker.process.pid, *worker.child_pids())]],
        )
        assert env.cr.fetchone()[0] >= 2, "as a server restart would, for the worker's connections"
    rows = [stack.wait_row(stack.call("bump", item_id).id, timeout=60) for _ in range(4)]
    assert [(row["state"], row["attempts"]) for row in rows] == [("done", 1)] * 4
    assert stack.item(item_id)["value"] == 8 and stack.item(item_id)["runs"] == 8, "each ran exactly once"
    assert re.search(r"task\.test\.item\.bump: \w+, retry 1/", worker.log()), "the lost connection was retried"


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_message_the_broker_lost_is_published_again_once_its_queue_is_empty(stack, fault_worker, broker):
    worker = fault_worker(broker, concurrency=1, env={"ODOO_CELERY_RELAY_RESEND_AFTER": "2"})
    stack.point_caller(harness.BROKERS[broker], worker.queue)
    lost_item = stack.new_item()
    lost = stack.call("bump", lost_item).id
    harness.wait_for(lambda: stack.task_row(lost)["sent_at"], 10, what="the publisher to mark it sent")
    with stack.app.connection_for_write() as connection:
        assert connection.default_channel.queue_purge(worker.queue) == 1, "as a broker restart without persistence"
    worker.start(stack.app)
    busy_item, waiting_item = stack.new_item(), stack.new_item()
    busy = stack.call("slow_bump", busy_item, seconds=5).id
    stack.wait_row(busy, states=("started",), timeout=30)
    waiting = stack.call("bump", waiting_item).id  # in the queue behind the busy one, longer than resend_after
    rows = {name: stack.wait_row(uuid, timeout=60) for name, uuid in (("lost", lost), ("waiting", waiting))}
    assert {name: (row["state"], row["attempts"]) for name, row in rows.items()} == {
        "lost": ("done", 1),
        "waiting": ("done", 1),
    }
    assert [stack.item(item)["runs"] for item in (lost_item, busy_item, waiting_item)] == [1, 1, 1]
    resent = [
        int(record_id)
        for ids in re.findall(r"their message was lost; published again: \[([\d, ]+)\]", worker.log())
        for record_id in ids.split(",")
    ]
    assert resent == [rows["lost"]["id"]], "only the lost one: the waiting one was still in its queue"


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_message_a_worker_has_just_taken_is_not_published_again(stack, broker):
    from odoo.addons.celery_task import app
    from odoo.addons.celery_task.worker import connections, relay

    queue = f"ct-test-{stack.run_id}-taken-{broker}"  # no worker consumes it, and it stays empty
    stack.point_caller(harness.BROKERS[broker], queue)
    taken, lost = (stack.unpublished_call("bump", stack.new_item()) for _ in range(2))
    for row in (taken, lost):
        stack.set_task_columns(row["id"], sent_at=datetime.datetime.utcnow() - datetime.timedelta(hours=1))

    def relay_round():
        with connections.main_process_cursor(stack.db) as cr:
            return relay.resend_lost(cr, stack.db, [queue], 2)

    try:
        assert relay_round() == 0, "an empty queue in one round: its message may have just been taken"
        stack.set_task_columns(taken["id"], state="started")  # the worker that took it has claimed it
        assert relay_round() == 1, "an empty queue in two rounds in a row: the pending one was lost"
        assert stack.task_row(lost["uuid"])["sent_at"] > stack.task_row(taken["uuid"])["sent_at"], "the lost one"
    finally:
        with stack.app.connection_for_write() as connection:
            connection.default_channel.queue_delete(app.broker_queue(queue, stack.db))


def test_concurrent_updates_of_the_same_row_both_end_done(stack, broker):
    worker = stack.use(broker)
    item_id = stack.new_item()
    first = stack.call("slow_bump", item_id, seconds=1.0)
    second = stack.call("slow_bump", item_id, seconds=1.0)
    rows = [stack.wait_row(result.id, timeout=60) for result in (first, second)]
    assert [row["state"] for row in rows] == ["done", "done"]
    assert [row["attempts"] for row in rows] == [1, 1], "concurrency retries are not business retries"
    assert stack.item(item_id)["value"] == 2 and stack.item(item_id)["runs"] == 2, "no lost update"
    assert "task.test.item.slow_bump: SerializationFailure, retry 1/" in worker.log(), "the conflict was retried"


def test_soft_time_limit_fails_and_rolls_back(stack, broker):
    item_id = stack.new_item()
    result = stack.call("soft_limited", item_id, seconds=5)
    row = stack.wait_row(result.id, timeout=30)
    assert row["state"] == "failed"
    assert row["exc_type"] == "billiard.exceptions.SoftTimeLimitExceeded"
    assert stack.item(item_id)["note"] is False


def test_hard_time_limit_kills_and_records_failure(stack, broker):
    item_id = stack.new_item()
    result = stack.call("hard_limited", item_id, seconds=10)
    row = stack.wait_row(result.id, timeout=30)
    assert row["state"] == "failed", "not left started"
    assert row["exc_type"].endswith("TimeLimitExceeded")
    assert "time_limit of 2" in row["exc_message"]
    time.sleep(4)
    row = stack.task_row(result.id)
    assert row["state"] == "failed" and row["attempts"] == 1, "the relay does not run a failed task again"
    assert stack.item(item_id)["note"] is False


def test_retryable_error_is_retried_until_success(stack, broker):
    item_id = stack.new_item()
    result = stack.call("flaky", item_id, succeed_on=3)
    assert result.get(timeout=60) == 3
    row = stack.task_row(result.id)
    assert (row["state"], row["attempts"]) == ("done", 3)
    assert stack.item(item_id)["runs"] == 1, "failed attempts were rolled back"


def test_retry_for_is_bounded_by_max_retries(stack, broker):
    item_id = stack.new_item()
    result = stack.call("flaky_value", item_id, succeed_on=3)
    row = stack.wait_row(result.id, timeout=60)
    assert (row["state"], row["attempts"]) == ("failed", 2)
    assert row["exc_type"] == "builtins.ValueError" and row["exc_message"] == "attempt 2 of 3"
    assert stack.item(item_id)["note"] is False


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_result_backend_down_still_records_the_outcome(stack, fault_worker, broker):
    dead_backend = f"redis://127.0.0.1:{harness.free_port()}/0"
    worker = fault_worker(broker, env={"ODOO_CELERY_BACKEND_URL": dead_backend})
    stack.point_caller(harness.BROKERS[broker], worker.queue)
    worker.start(stack.app)
    item_id = stack.new_item()
    result = stack.call("bump", item_id, amount=7)
    row = stack.wait_row(result.id, timeout=60)
    assert row["state"] == "done" and row["result"] == f'{{"ids":[{item_id}],"values":[7]}}'
    assert stack.item(item_id)["value"] == 7
    harness.wait_for(lambda: "Connection refused" in worker.log(), 30, what="the backend error in the log")


def test_message_for_a_finished_task_is_acknowledged_and_skipped(stack, broker):
    worker = stack.workers[broker]
    from odoo.addons.celery_task.app import publish_all
    from odoo.addons.celery_task.task_record import TaskMessage

    item_id = stack.new_item()
    result = stack.call("bump", item_id)
    row = stack.wait_row(result.id)
    assert publish_all([TaskMessage.from_row(stack.db, row)])
    harness.wait_for(
        lambda: f"task.test.item.bump[{row['uuid']}] is already done; message acknowledged and skipped" in worker.log(),
        20,
        what="the skip line",
    )
    assert stack.item(item_id)["runs"] == 1
    assert stack.task_row(result.id)["attempts"] == 1


def test_duplicate_delivered_while_running_does_not_run_twice(stack, broker):
    worker = stack.workers[broker]
    from odoo.addons.celery_task.app import publish_all
    from odoo.addons.celery_task.task_record import TaskMessage

    item_id, row = running_slow_bump(stack)
    assert publish_all([TaskMessage.from_row(stack.db, row)]), "the same message again, as a broker redelivery would"
    skipped = f"task.test.item.slow_bump[{row['uuid']}] is locked by another worker, which runs it or has just run it"
    harness.wait_for(lambda: f"{skipped}; duplicate skipped" in worker.log(), 20, what="the duplicate line")
    assert stack.wait_row(row["uuid"])["state"] == "done"
    assert stack.item(item_id)["runs"] == 1


def test_a_task_cancelled_while_it_runs_commits_nothing_even_unrevoked(stack, redis):
    item_id, row = running_slow_bump(stack)
    with stack.env() as env:  # the record of a cancel whose revoke never reached the worker
        env.cr.execute("UPDATE celery_task SET state = 'cancelled', done_at = now() WHERE id = %s", [row["id"]])
    rolled_back = f"[{row['uuid']}] was cancelled while it ran; nothing it did commits"
    harness.wait_for(lambda: rolled_back in redis.log(), 30, what="the worker to roll the task back")
    assert stack.task_row(row["uuid"])["state"] == "cancelled"
    assert stack.item(item_id)["runs"] == 0


def test_the_relay_covers_a_queue_added_after_the_start(stack, fault_worker):
    worker = fault_worker("redis", env={"ODOO_CELERY_RELAY_INTERVAL": "0.5", "ODOO_CELERY_RELAY_DELAY": "0.5"})
    added = f"{worker.queue}-added"
    stack.point_caller(harness.BROKERS["redis"], added)
    worker.start(stack.app)
    row = stack.unpublished_call("bump", stack.new_item())
    stack.app.control.add_consumer(added, destination=[worker.name], reply=True)
    assert stack.wait_row(row["uuid"], timeout=20)["state"] == "done", "stranded in a queue consumed since add_consumer"
    assert f"stranded task(s) of {stack.db}" in worker.log()

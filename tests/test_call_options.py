"""Per-call options, in queue_job's spelling (``with_delay``) and Celery's (``set``, ``apply_async``), and
scheduled tasks that wait in PostgreSQL until due. The tests' schedule horizon is 3 s (conftest)."""

import datetime
import time
import zoneinfo

import pytest

import harness

pytestmark = pytest.mark.odoo

HORIZON = 3


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


BAD_CALLS = {
    "an undecorated method": (lambda item, c: item.with_delay().not_a_task(), TypeError, "not_a_task: with_delay"),
    "an unknown option": (lambda item, c: item.with_delay(colour="red"), TypeError, r"unknown option\(s\) colour"),
    "eta and countdown": (
        lambda item, c: item.with_delay(eta=utcnow(), countdown=5),
        ValueError,
        "eta or countdown, not both",
    ),
    "a negative countdown": (lambda item, c: item.with_delay(countdown=-1), ValueError, "countdown is at least 0"),
    "a queue that is not a name": (lambda item, c: item.with_delay(queue="two words"), ValueError, "queue is a name"),
    "a priority out of range": (lambda item, c: item.with_delay(priority=10), ValueError, r"0 \(first\) to 9"),
    "an eta that is no datetime": (lambda item, c: item.with_delay(eta="tomorrow"), TypeError, "eta is a datetime"),
    "unique and identity_key": (
        lambda item, c: item.with_delay(unique=True, identity_key="x"),
        TypeError,
        "identity_key is queue_job's name for unique",
    ),
    "an unknown option of a signature": (
        lambda item, c: c.signature(item.bump).set(colour=1),
        TypeError,
        r"unknown option\(s\) colour",
    ),
    "a negative countdown by apply_async": (
        lambda item, c: c.signature(item.bump).apply_async(countdown=-2),
        ValueError,
        "countdown is at least 0",
    ),
    "unique on a workflow's step": (
        lambda item, c: c.chain(c.signature(item.bump).set(unique=True), c.signature(item.bump)).delay(),
        ValueError,
        "not deduplicated",
    ),
}


@pytest.mark.parametrize("bad", sorted(BAD_CALLS))
def test_a_bad_call_raises_at_once_and_writes_nothing(stack, bad):
    from odoo.addons import celery_task

    call, error, message = BAD_CALLS[bad]
    item_id = stack.new_item()
    with stack.env() as env:
        before = harness.task_count(env)
        with pytest.raises(error, match=message):
            call(env["task.test.item"].browse(item_id), celery_task)
        assert harness.task_count(env) == before, "nothing written"


def test_each_option_is_kept_on_the_task_record_and_equal_keys_share_a_task(stack):
    from odoo.addons.celery_task import signature

    queue = f"ct-test-{stack.run_id}-options"  # no worker consumes it
    item_id = stack.new_item()
    tomorrow_in_brussels = datetime.datetime.now(zoneinfo.ZoneInfo("Europe/Brussels")) + datetime.timedelta(days=1)
    with stack.env() as env:
        item = env["task.test.item"].browse(item_id)
        delayed = item.with_delay(
            eta=tomorrow_in_brussels,
            priority=2,
            queue=queue,
            max_retries=4,
            time_limit=30,
            soft_time_limit=20,
            expires=tomorrow_in_brussels + datetime.timedelta(hours=1),
            identity_key="invoice-7",
        )
        first, again = delayed.bump(3), delayed.bump(3)
        step = signature(item.bump, 2).set(priority=7, queue=queue, countdown=3600).apply_async(args=(), max_retries=0)
    assert again.id == first.id, "an equal identity_key while the first waits: the same task"
    row = stack.task_row(first.id)
    expected_eta = tomorrow_in_brussels.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    assert row["eta"] == expected_eta, "an aware eta is stored as UTC"
    assert (row["state"], row["sent_at"]) == ("scheduled", None), "due tomorrow: it waits, unpublished"
    assert (row["priority"], row["queue"], row["max_retries"]) == (2, queue, 4)
    assert (row["time_limit"], row["soft_time_limit"]) == (30, 20)
    assert row["expires_at"] == expected_eta + datetime.timedelta(hours=1)
    assert row["identity_key"] == "task.test.item.bump:invoice-7"
    step_row = stack.task_row(step.id)
    assert (step_row["priority"], step_row["state"], step_row["max_retries"]) == (7, "scheduled", 0)
    assert 3590 < (step_row["eta"] - step_row["create_date"]).total_seconds() < 3610
    with stack.env() as env:
        env.cr.execute("DELETE FROM celery_task WHERE uuid = ANY(%s)", [[first.id, step.id]])


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_countdown_starts_no_earlier_than_asked_and_on_time(stack, broker):
    stack.use(broker)
    item_ids = [stack.new_item(), stack.new_item()]
    with stack.env() as env:
        items = env["task.test.item"].browse(item_ids)
        soon, later = items[0].with_delay(countdown=1.5).bump(), items[1].with_delay(countdown=HORIZON + 2).bump()
    assert stack.task_row(soon.id)["state"] == "pending", "within the horizon: on the broker, held by a worker"
    assert stack.task_row(later.id)["state"] == "scheduled", "beyond it: in the database until due"
    for result, countdown in ((soon, 1.5), (later, HORIZON + 2)):
        row = stack.wait_row(result.id, timeout=30)
        late = (row["started_at"] - row["eta"]).total_seconds()
        assert row["state"] == "done" and row["started_at"] >= row["eta"], "no earlier than its eta"
        assert (row["eta"] - row["create_date"]).total_seconds() >= countdown - 1
        assert late <= 1 + 1, f"started {late:.2f} s after its eta: within the publishing interval plus a second"


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_priority_0_runs_before_priority_9(stack, fault_worker, broker):
    worker = fault_worker(broker, concurrency=1)
    stack.point_caller(harness.BROKERS[broker], worker.queue)
    item_ids = [stack.new_item() for _ in range(8)]
    with stack.env() as env:
        items = env["task.test.item"].browse(item_ids)
        last = [item.with_delay(priority=9).bump().id for item in items[:4]]
        first = [item.with_delay(priority=0).bump().id for item in items[4:]]
    stack._publisher.wait_idle(timeout=10)
    worker.start(stack.app)
    rows = sorted((stack.wait_row(task_uuid, timeout=60) for task_uuid in last + first), key=lambda r: r["started_at"])
    assert [row["uuid"] in first for row in rows] == [True] * 4 + [False] * 4, "the four of priority 0 ran first"


def test_a_queue_of_its_own_is_taken_only_by_its_consumer(stack, fault_worker):
    own = fault_worker("redis")
    other_queue = f"{own.queue}-other"
    stack.point_caller(harness.BROKERS["redis"], own.queue)
    own.start(stack.app)
    item_id = stack.new_item()
    with stack.env() as env:
        item = env["task.test.item"].browse(item_id)
        plain, elsewhere = item.bump(), item.with_delay(queue=other_queue).bump()
    assert stack.wait_row(plain.id)["worker_host"] == own.name
    time.sleep(2)
    assert stack.task_row(elsewhere.id)["state"] == "pending", "its queue has no consumer yet"
    other = fault_worker("redis", queue=other_queue).start(stack.app)
    row = stack.wait_row(elsewhere.id, timeout=30)
    assert (row["state"], row["worker_host"], row["queue"]) == ("done", other.name, other_queue)


def test_an_expired_call_never_runs(stack, fault_worker):
    worker = fault_worker("redis", concurrency=1)
    stack.point_caller(harness.BROKERS["redis"], worker.queue)
    worker.start(stack.app)
    busy, item_id = stack.new_item(), stack.new_item()
    stack.call("slow_bump", busy, seconds=3)
    with stack.env() as env:
        expired = env["task.test.item"].browse(item_id).with_delay(expires=1).bump()
    row = stack.wait_row(expired.id, timeout=30)
    assert (row["state"], row["exc_type"]) == ("cancelled", "expired")
    assert stack.item(item_id)["runs"] == 0


def test_a_call_sets_its_own_retries_and_time_limits(stack, redis):
    item_ids = [stack.new_item(), stack.new_item()]
    with stack.env() as env:
        items = env["task.test.item"].browse(item_ids)
        retried = items[0].with_delay(max_retries=1).flaky(succeed_on=3)  # its decorator allows 3
        limited = items[1].with_delay(soft_time_limit=1).slow_bump(3)
    row = stack.wait_row(retried.id, timeout=30)
    assert (row["state"], row["attempts"], row["max_retries"]) == ("failed", 2, 1)
    row = stack.wait_row(limited.id, timeout=30)
    assert (row["state"], row["exc_type"]) == ("failed", "billiard.exceptions.SoftTimeLimitExceeded")
    assert stack.item(item_ids[1])["runs"] == 0


def test_each_step_of_a_workflow_has_its_own_options(stack, redis):
    from odoo.addons.celery_task import chain, signature

    with stack.env() as env:
        first, second = env["task.test.item"].create([{"name": "first"}, {"name": "second"}])
        result = chain(signature(first.add, 1).set(priority=0), signature(second.add, 10).set(countdown=2)).delay()
    last = stack.wait_row(result.id, timeout=30)
    with stack.env() as env:
        env.cr.execute(
            "SELECT uuid FROM celery_task WHERE workflow_root_id = %s AND id <> %s",
            [last["workflow_root_id"], last["id"]],
        )
        earlier = stack.task_row(env.cr.fetchone()[0])
    assert (earlier["priority"], last["priority"]) == (0, None)
    assert last["started_at"] >= last["eta"] >= earlier["create_date"], "its countdown counts from the call"
    assert last["result"] == "12", "the chain passed the first step's result on"


def test_a_scheduled_task_waits_unpublished_and_runs_when_due(stack, redis):
    item_id = stack.new_item()
    with stack.env() as env:
        result = env["task.test.item"].browse(item_id).with_delay(countdown=HORIZON + 2).bump()
    time.sleep(HORIZON)
    row = stack.task_row(result.id)
    assert (row["state"], row["sent_at"]) == ("scheduled", None), "nothing on the broker, no worker holds it"
    row = stack.wait_row(result.id, timeout=30)
    assert row["state"] == "done" and row["sent_at"] >= row["eta"] and stack.item(item_id)["runs"] == 1


def test_a_scheduled_task_is_cancelled_or_moved_without_the_broker(stack, redis):
    from odoo.exceptions import UserError

    item_ids = [stack.new_item(), stack.new_item(), stack.new_item()]
    with stack.env() as env:
        items = env["task.test.item"].browse(item_ids)
        cancelled, moved = items[0].with_delay(countdown=HORIZON + 1).bump(), items[1].with_delay(countdown=3600).bump()
        pending = items[2].bump()
    with stack.env() as env:
        tasks = env["celery.task"]
        tasks.search([("uuid", "=", cancelled.id)]).action_cancel()
        tasks.search([("uuid", "=", moved.id)]).write({"eta": utcnow() + datetime.timedelta(seconds=2)})
    with stack.env() as env, pytest.raises(UserError, match="Only tasks that wait in the database"):
        env["celery.task"].search([("uuid", "=", pending.id)]).write({"eta": utcnow()})
    row = stack.wait_row(moved.id, timeout=30)
    assert row["state"] == "done" and stack.item(item_ids[1])["runs"] == 1, "run at its new time, not in an hour"
    time.sleep(2)
    row = stack.task_row(cancelled.id)
    assert (row["state"], row["sent_at"]) == ("cancelled", None), "never published, so nothing to revoke"
    assert stack.item(item_ids[0])["runs"] == 0


def test_a_retry_with_a_long_countdown_waits_in_the_database(stack, redis):
    item_id = stack.new_item()
    result = stack.call("flaky_later", item_id, succeed_on=2)
    row = stack.wait_row(result.id, states=("retry",), timeout=30)
    assert row["sent_at"] is None and (row["eta"] - row["write_date"]).total_seconds() >= 3.9, "unsent until due"
    row = stack.wait_row(result.id, timeout=30)
    assert (row["state"], row["attempts"], row["result"]) == ("done", 2, "2")
    assert row["started_at"] >= row["eta"]


def schedule(stack, count, seconds):
    """``count`` bumps on new items, due in ``seconds`` (beyond the horizon): (item ids, task uuids, their eta)."""
    item_ids = [stack.new_item() for _ in range(count)]
    with stack.env() as env:
        uuids = [item.with_delay(countdown=seconds).bump().id for item in env["task.test.item"].browse(item_ids)]
    return item_ids, uuids, stack.task_row(uuids[0])["eta"]


def sleep_until(moment):
    time.sleep(max(0.0, (moment - utcnow()).total_seconds()))


def exactly_once(stack, item_ids, uuids):
    rows = [stack.wait_row(task_uuid, timeout=90) for task_uuid in uuids]
    assert {row["state"] for row in rows} == {"done"}
    assert [stack.item(item_id)["runs"] for item_id in item_ids] == [1] * len(item_ids), "each ran exactly once"


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_worker_killed_as_tasks_fall_due_loses_nothing_and_runs_nothing_twice(stack, fault_worker, broker):
    first = fault_worker(broker)
    stack.point_caller(harness.BROKERS[broker], first.queue)
    first.start(stack.app)
    item_ids, uuids, eta = schedule(stack, 20, HORIZON + 3)
    sleep_until(eta + datetime.timedelta(seconds=0.3))  # the leader's round: publishing them, or just done
    first.kill()
    fault_worker(broker, name=first.name, queue=first.queue).start(stack.app)
    exactly_once(stack, item_ids, uuids)


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_broker_lost_as_tasks_fall_due_loses_nothing(stack, fault_worker, private_redis, broker):
    outage = private_redis() if broker == "redis" else harness.BrokerOutage(harness.BROKERS["rabbitmq"]).start()
    worker = fault_worker(broker, env={"ODOO_CELERY_BROKER_URL": outage.url})
    stack.point_caller(outage.url, worker.queue)
    worker.start(stack.app)
    item_ids, uuids, eta = schedule(stack, 10, HORIZON + 3)
    sleep_until(eta - datetime.timedelta(seconds=0.5))
    outage.stop()
    try:
        harness.wait_for(lambda: "broker refused" in worker.log(), 20, what="a due task the broker refused")
    finally:
        outage.start()
    exactly_once(stack, item_ids, uuids)

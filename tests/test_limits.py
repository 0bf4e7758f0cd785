"""Unique tasks and limits that hold across every worker: identity keys, concurrency limits, rate limits."""

import collections
import multiprocessing

import pytest

import harness
import unique_racer

pytestmark = pytest.mark.odoo

FINISHED = ("done", "failed", "cancelled")
ROUNDS = 50


def tasks_named(stack, name, **where):
    """The task records of task ``name`` (and ``where`` columns), in the order they were written."""
    clauses = "".join(f" AND {column} = %s" for column in where)
    with stack.env() as env:
        env.cr.execute(f"SELECT * FROM celery_task WHERE name = %s{clauses} ORDER BY id", [name, *where.values()])
        return env.cr.dictfetchall()


def wait_finished(stack, uuids, timeout=60):
    return [stack.wait_row(task_uuid, states=FINISHED, timeout=timeout) for task_uuid in uuids]


def most_at_once(rows):
    """The largest number of ``rows`` whose [started_at, done_at] overlap."""
    events = sorted([(row["started_at"], 1) for row in rows] + [(row["done_at"], -1) for row in rows])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def test_an_equal_call_while_one_waits_returns_the_waiting_task(stack, fault_worker):
    worker = fault_worker("redis")
    stack.point_caller(harness.BROKERS["redis"], worker.queue)  # no worker reads it yet: the tasks wait
    item_id = stack.new_item()
    first = stack.call("unique_bump", item_id, 5)
    assert stack.call("unique_bump", item_id, 5).id == first.id, "equal and open: the open task"
    with stack.env() as env:
        item = env["task.test.item"].browse(item_id)
        assert item.unique_bump(5).id == first.id and item.unique_bump(amount=5).id != first.id
    other = stack.call("unique_bump", item_id, 6)
    assert other.id != first.id, "other arguments: another task"
    rows = tasks_named(stack, "task.test.item.unique_bump", record_ids=f"[{item_id}]")
    assert len(rows) == 3 and {first.id, other.id} <= {row["uuid"] for row in rows}, "amount=5 is stored apart from 5"
    worker.start(stack.app)
    wait_finished(stack, [row["uuid"] for row in rows])
    again = stack.call("unique_bump", item_id, 5)
    assert again.id != first.id, "once it ran, an equal call is a new task (waiting to run is what counts)"
    wait_finished(stack, [again.id])
    with stack.env() as env:
        task = env["celery.task"].search([("uuid", "=", first.id)])
        assert task.identity_key.startswith("task.test.item.unique_bump:") and not task.open_key


def test_unique_running_counts_a_running_task_as_open(stack, redis):
    item_id = stack.new_item()
    first = stack.call("tagged", item_id, "nightly", seconds=2)
    stack.wait_row(first.id, states=("started",))
    assert stack.call("tagged", item_id, "nightly").id == first.id, "running, and unique while running"
    assert stack.call("tagged", item_id, "weekly").id != first.id
    stack.wait_row(first.id)
    assert stack.call("tagged", item_id, "nightly").id != first.id, "finished: no longer open"


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_two_processes_racing_write_one_task_per_round(stack, fault_worker, broker, record_property):
    worker = fault_worker(broker)
    stack.point_caller(harness.BROKERS[broker], worker.queue)  # nobody reads it until the race is over
    item_id = stack.new_item()
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    settings = {"broker_url": harness.BROKERS[broker], "task_default_queue": worker.queue}
    racers = [
        context.Process(
            target=unique_racer.race,
            args=(stack.config_path, stack.db, item_id, ROUNDS, barrier, results, settings),
        )
        for _ in range(2)
    ]
    for racer in racers:
        racer.start()
    seen = collections.defaultdict(set)
    for _ in range(2 * ROUNDS):
        _, round_number, task_uuid = results.get(timeout=120)
        seen[round_number].add(task_uuid)
    for racer in racers:
        racer.join(60)
        assert racer.exitcode == 0
    rows = tasks_named(stack, "task.test.item.unique_bump", record_ids=f"[{item_id}]")
    per_round = collections.Counter(row["args"] for row in rows)
    record_property("unique_race", f"{len(rows)} tasks for {ROUNDS} rounds of 2 racing callers")
    assert len(rows) == ROUNDS and set(per_round.values()) == {1}, "exactly one task per round"
    assert all(len(uuids) == 1 for uuids in seen.values()), "both racers got the same task"
    worker.start(stack.app)
    wait_finished(stack, [row["uuid"] for row in rows], timeout=120)
    assert stack.item(item_id)["value"] == sum(range(ROUNDS)) and stack.item(item_id)["runs"] == ROUNDS


def test_a_concurrency_limit_holds_across_workers_and_a_killed_worker_leaks_no_slot(stack, fault_worker):
    queue = f"ct-test-{stack.run_id}-limited"
    workers = [fault_worker("redis", queue=queue, concurrency=2) for _ in range(2)]
    stack.point_caller(harness.BROKERS["redis"], queue)
    for worker in workers:
        worker.start(stack.app)
    item_ids = [stack.new_item() for _ in range(40)]
    uuids = [stack.call("limited", item_id, 0.25).id for item_id in item_ids]

    def victim_running():
        rows = [stack.task_row(task_uuid) for task_uuid in uuids]
        done = sum(row["state"] == "done" for row in rows)
        return done >= 8 and any(row["state"] == "started" and row["worker_host"] == workers[0].name for row in rows)

    harness.wait_for(victim_running, 60, interval=0.05, what="the first worker to run a limited task")
    workers[0].kill()
    killed_at = max(row["done_at"] for row in map(stack.task_row, uuids) if row["done_at"])
    fault_worker("redis", queue=queue, concurrency=2, name=workers[0].name).start(stack.app)
    rows = wait_finished(stack, uuids, timeout=120)
    assert [row["state"] for row in rows] == ["done"] * 40
    assert [stack.item(item_id)["runs"] for item_id in item_ids] == [1] * 40, "each ran exactly once"
    assert most_at_once(rows) == 2, "never more than the limit, and the limit was used"
    after = [row for row in rows if row["started_at"] > killed_at]
    assert most_at_once(after) == 2, "after the kill, both slots still serve: none leaked"
    with stack.env() as env:
        task = env["celery.task"].search([("uuid", "=", uuids[0])])
        assert (task.limit_name, task.limit_size) == ("task.test.item.limited", 2)


def test_a_limit_record_resizes_the_limit_without_a_restart(stack, fault_worker):
    worker = fault_worker("redis", concurrency=3)
    stack.point_caller(harness.BROKERS["redis"], worker.queue)
    worker.start(stack.app)
    with stack.env(uid=2) as env:
        limit = env["celery.task.limit"].create({"name": "ct_test_geocoding", "size": 1})
        limit_id = limit.id
    one_at_a_time = [stack.call("geocode", stack.new_item(), 0.3).id for _ in range(6)]
    assert most_at_once(wait_finished(stack, one_at_a_time)) == 1
    with stack.env(uid=2) as env:
        env["celery.task.limit"].browse(limit_id).size = 3
    three_at_a_time = [stack.call("geocode", stack.new_item(), 0.6).id for _ in range(6)]
    rows = wait_finished(stack, three_at_a_time)
    assert 2 <= most_at_once(rows) <= 3, "the new size applies to the next claims"
    with stack.env() as env:
        limit = env["celery.task.limit"].browse(limit_id)
        assert (limit.task_names, limit.running_count, limit.deferred_count) == ("task.test.item.geocode", 0, 0)
        limit.unlink()


def test_a_rate_limit_spaces_a_workers_tasks(stack, redis):
    uuids = [stack.call("rated", stack.new_item()).id for _ in range(3)]
    starts = sorted(row["started_at"] for row in wait_finished(stack, uuids))
    assert (starts[-1] - starts[0]).total_seconds() >= 3, "30/m: one every two seconds on this worker"


def test_bad_options_and_keys_are_refused_with_the_callers_transaction_unharmed(stack):
    from odoo.addons.celery_task import celeryTask

    def method(self):
        return None

    with pytest.raises(ValueError, match="concurrency is a number of tasks at once, at least 1, not 0"):
        celeryTask(model="res.partner", name="units_zero", concurrency=0)(method)
    with pytest.raises(TypeError, match="unique is True, False or a key"):
        celeryTask(model="res.partner", name="units_yes", unique="yes")
    with pytest.raises(TypeError, match="unique_running needs unique"):
        celeryTask(model="res.partner", name="units_running", unique_running=True)
    with pytest.raises(ValueError, match="rate_limit is Celery's, such as '10/m'"):
        celeryTask(model="res.partner", name="units_fast", rate_limit="fast")
    with pytest.raises(TypeError, match="unexpected keyword argument 'uniq'"):
        celeryTask(model="res.partner", uniq=True)
    item_id = stack.new_item()
    with stack.env() as env:
        item = env["task.test.item"].browse(item_id)
        with pytest.raises(TypeError, match=r"task\.test\.item\.bad_key: its unique key function returned 1, not a"):
            item.bad_key()
        with pytest.raises(ValueError, match=r"task\.test\.item\.raising_key: its unique key function raised"):
            item.raising_key()
        item.name = "still writable"
    assert stack.item(item_id)["value"] == 0
    with stack.env() as env:
        assert env["task.test.item"].browse(item_id).name == "still writable"
        assert not env["celery.task"].search_count(
            [("name", "in", ["task.test.item.bad_key", "task.test.item.raising_key"])]
        )

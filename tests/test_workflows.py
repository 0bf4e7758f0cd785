"""Workflows of decorated methods (chain, group, chord) on real workers, exactly once through the outbox."""

import contextlib
import itertools
import json

import pytest

import harness

pytestmark = pytest.mark.odoo

FINISHED = ("done", "failed", "cancelled")


@pytest.fixture
def canvas(stack):
    from odoo.addons import celery_task

    return celery_task


ADMIN_UID = 2


@contextlib.contextmanager
def items(stack, count):
    """``count`` new test items, in a transaction that commits on a clean exit, as a request's."""
    with stack.env() as env:
        yield env["task.test.item"].create([{"name": f"item {n}"} for n in range(count)])


def steps(stack, result_uuid):
    """The task records of the workflow a task belongs to, in the order they were written."""
    with stack.env() as env:
        env.cr.execute(
            """SELECT t.* FROM celery_task t JOIN celery_task w ON w.workflow_root_id = t.workflow_root_id
                WHERE w.uuid = %s ORDER BY t.id""",
            [result_uuid],
        )
        return env.cr.dictfetchall()


def wait_steps(stack, result_uuid, timeout=60):
    def finished():
        rows = steps(stack, result_uuid)
        return rows if rows and all(row["state"] in FINISHED for row in rows) else None

    return harness.wait_for(finished, timeout, what=f"every step of the workflow of {result_uuid} to finish")


def slow_first_chain(stack, canvas, seconds):
    """chain(slow_bump(seconds), add(1), add(previous)) on three new items: (its result, the items)."""
    with items(stack, 3) as records:
        slow, second, third = records
        result = canvas.chain(
            canvas.signature(slow.slow_bump, seconds, immutable=True),
            canvas.signature(second.add, 1, immutable=True),
            canvas.signature(third.add),
        ).delay()
    return result, records


def counts(stack):
    with stack.env() as env:
        env.cr.execute("SELECT (SELECT count(*) FROM celery_task), (SELECT count(*) FROM celery_workflow)")
        return env.cr.fetchone()


def test_chain_hands_each_result_to_the_next_step(stack, broker, canvas):
    with items(stack, 3) as (first, second, third):
        result = canvas.chain(
            canvas.signature(first.add, 1), canvas.signature(second.add), canvas.signature(third.add, amount=10)
        ).delay()
        first.env.cr.execute(
            "SELECT state, sent_at FROM celery_task WHERE workflow_root_id = "
            "(SELECT workflow_root_id FROM celery_task WHERE uuid = %s) ORDER BY id",
            [result.id],
        )
        assert first.env.cr.fetchall() == [("pending", None), ("waiting", None), ("waiting", None)]
        assert stack.task_row(result.id) is None, "nothing is visible before the caller commits"
    rows = wait_steps(stack, result.id)
    assert [(row["state"], row["result"], row["attempts"]) for row in rows] == [
        ("done", "2", 1),
        ("done", "3", 1),
        ("done", "13", 1),
    ]
    assert rows[-1]["uuid"] == result.id, "the chain's result is its last step's"
    assert [stack.item(item)["value"] for item in (first.id, second.id, third.id)] == [2, 3, 13]
    assert [stack.item(item)["runs"] for item in (first.id, second.id, third.id)] == [1, 1, 1]


def test_a_rolled_back_workflow_leaves_nothing(stack, redis, canvas):
    before = counts(stack)
    with items(stack, 2) as (first, second):
        result = canvas.chain(canvas.signature(first.add, 1), canvas.signature(second.add)).delay()
        first.env.cr.rollback()
    assert counts(stack) == before
    assert stack.task_row(result.id) is None


def test_a_waiting_step_stays_unpublished_until_its_release(stack, redis, canvas):
    with items(stack, 2) as (slow, after):
        result = canvas.chain(
            canvas.signature(slow.slow_bump, 2.0, immutable=True), canvas.signature(after.add, 5, immutable=True)
        ).delay()
    first, second = None, None

    def first_running():
        nonlocal first, second
        first, second = steps(stack, result.id)
        return first["state"] == "started"

    harness.wait_for(first_running, 30, what="the first step to start")
    assert (second["state"], second["sent_at"]) == ("waiting", None), "a waiting step is in the database only"
    rows = wait_steps(stack, result.id)
    assert [row["state"] for row in rows] == ["done", "done"]
    assert rows[1]["started_at"] >= rows[0]["done_at"], "released by the commit of the step before it"
    assert (rows[1]["receives"], rows[1]["result"]) == ("nothing", "6"), "immutable: only its own arguments"


def test_group_members_run_side_by_side_and_show_their_progress(stack, broker, canvas):
    with items(stack, 4) as members:
        result = canvas.group([canvas.signature(item.slow_bump, 1.0) for item in members]).delay()
    assert len(result.results) == 4 and result.id, "a GroupResult of every member's AsyncResult"
    rows = wait_steps(stack, result.results[0].id)
    assert [row["state"] for row in rows] == ["done"] * 4
    spans = sorted((row["started_at"], row["done_at"]) for row in rows)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)), "members overlapped in time"
    with stack.env() as env:
        tasks = env["celery.task"].search([("uuid", "in", [member.id for member in result.results])])
        assert set(tasks.mapped("workflow_progress")) == {"group 4 of 4 done"}
        assert tasks[0].workflow_root_id.progress_label == "4 of 4 done"
        assert len(tasks[0].member_task_ids) == 3


def test_group_progress_counts_members_as_they_finish(stack, redis, canvas):
    with items(stack, 3) as members:
        result = canvas.group(
            [canvas.signature(members[0].add, 1), *(canvas.signature(item.slow_bump, 3.0) for item in members[1:])]
        ).delay()

    def partly_done():
        with stack.env() as env:
            task = env["celery.task"].search([("uuid", "=", result.results[1].id)])
            return task.workflow_progress if task.workflow_progress.startswith("group 1 of 3") else None

    assert harness.wait_for(partly_done, 30, interval=0.1, what="one member of three done") == "group 1 of 3 done"
    wait_steps(stack, result.results[0].id)


def test_chord_callback_gets_the_results_in_order_exactly_once(stack, broker, canvas):
    with items(stack, 6) as records:
        *members, callback = records
        result = canvas.chord(
            [canvas.signature(item.add, n) for n, item in enumerate(members)], canvas.signature(callback.collect)
        ).delay()
    rows = wait_steps(stack, result.id)
    assert [row["state"] for row in rows] == ["done"] * 6
    assert json.loads(rows[-1]["result"]) == [1, 2, 3, 4, 5], "the members' results, in the header's order"
    assert stack.item(callback.id)["runs"] == 1
    assert rows[-1]["started_at"] >= max(row["done_at"] for row in rows[:-1])


def test_a_failed_step_stops_the_chain_and_its_requeue_resumes_it(stack, broker, canvas):
    with items(stack, 3) as (first, picky, last):
        result = canvas.chain(
            canvas.signature(first.add, 1), canvas.signature(picky.picky), canvas.signature(last.add)
        ).delay()
    rows = wait_steps(stack, result.id)
    assert [row["state"] for row in rows] == ["done", "failed", "cancelled"]
    failed, stopped = rows[1], rows[2]
    assert "is not fixed yet" in failed["exc_message"]
    assert stopped["exc_message"].startswith(f"step task.test.item.picky [{failed['uuid']}] failed")
    assert stack.item(last.id)["runs"] == 0

    def fix_and_requeue(env):
        env["task.test.item"].browse(picky.id).note = "fixed"
        env["celery.task"].browse(failed["id"]).action_requeue()

    stack.retried(fix_and_requeue)
    harness.wait_for(lambda: stack.task_row(result.id)["state"] == "done", 60, what="the chain to resume")
    rows = steps(stack, result.id)
    assert [(row["state"], row["result"]) for row in rows] == [("done", "2"), ("done", "2"), ("done", "3")]
    assert [stack.item(item)["runs"] for item in (first.id, picky.id, last.id)] == [1, 1, 1]


def test_a_failed_member_cancels_the_callback_and_its_success_releases_it(stack, broker, canvas):
    with items(stack, 3) as (member, picky, callback):
        result = canvas.chord(
            [canvas.signature(member.add, 1), canvas.signature(picky.picky, 7)], canvas.signature(callback.collect)
        ).delay()
    rows = wait_steps(stack, result.id)
    assert [row["state"] for row in rows] == ["done", "failed", "cancelled"]
    assert "step task.test.item.picky" in rows[2]["exc_message"] and "failed" in rows[2]["exc_message"]

    def fix_and_requeue(env):
        env["task.test.item"].browse(picky.id).note = "fixed"
        env["celery.task"].browse(rows[1]["id"]).action_requeue()
        assert env["celery.task"].browse(rows[2]["id"]).state == "waiting", "the callback waits again"

    stack.retried(fix_and_requeue)
    harness.wait_for(lambda: stack.task_row(result.id)["state"] == "done", 60, what="the callback to run")
    assert json.loads(stack.task_row(result.id)["result"]) == [2, 7]
    assert stack.item(callback.id)["runs"] == 1


def test_a_step_whose_records_were_deleted_fails_and_stops_the_chain(stack, redis, canvas):
    result, (_, doomed, _) = slow_first_chain(stack, canvas, 1.0)
    with stack.env() as env:
        env["task.test.item"].browse(doomed.id).unlink()
    rows = wait_steps(stack, result.id)
    assert [row["state"] for row in rows] == ["done", "failed", "cancelled"]
    assert rows[1]["exc_type"].endswith("RecordsGone") and f"task.test.item({doomed.id},)" in rows[1]["exc_message"]
    assert "failed" in rows[2]["exc_message"]


def test_bad_workflows_fail_at_delay_and_write_nothing(stack, canvas):
    before = counts(stack)
    with items(stack, 2) as (first, second):
        with pytest.raises(TypeError, match=r"not_a_task.* is not one"):
            canvas.signature(first.not_a_task)
        with pytest.raises(TypeError, match=r"task\.test\.item\.add arguments\['args'\]\[0\] is not JSON"):
            canvas.signature(first.add, object())
        with pytest.raises(TypeError, match=r"task\.test\.item\.add.*too many positional arguments"):
            canvas.chain(canvas.signature(first.add, 1), canvas.signature(second.add, 1, 2)).delay()
        with pytest.raises(TypeError, match=r"task\.test\.item\.add.*missing a required argument: 'value'"):
            canvas.chain(canvas.signature(first.add), canvas.signature(second.add)).delay()
        with pytest.raises(ValueError, match="an empty group has nothing to run"):
            canvas.group([])
        with pytest.raises(ValueError, match="an empty chain has nothing to run"):
            canvas.chain()
        first.name = "still writable"
    assert counts(stack) == (before[0], before[1]), "nothing was written"
    assert stack.item(first.id)["value"] == 0


def test_cancelling_a_workflow_cancels_its_waiting_steps(stack, redis, canvas):
    result, (_, second, third) = slow_first_chain(stack, canvas, 2.0)
    harness.wait_for(lambda: steps(stack, result.id)[0]["state"] == "started", 30, what="the first step")
    with stack.env(uid=ADMIN_UID) as env:
        workflow = env["celery.task"].search([("uuid", "=", result.id)]).workflow_root_id
        workflow.action_cancel()
    rows = wait_steps(stack, result.id)
    assert [row["state"] for row in rows] == ["cancelled"] * 3
    assert [stack.item(item)["runs"] for item in (second.id, third.id)] == [0, 0]


def test_a_workflow_shows_its_steps_on_each_task(stack, redis, canvas):
    with items(stack, 4) as (first, left, right, callback):
        result = canvas.chain(
            canvas.signature(first.add, 1),
            canvas.chord([canvas.signature(left.add), canvas.signature(right.add)], canvas.signature(callback.collect)),
        ).delay()
    rows = wait_steps(stack, result.id)
    with stack.env() as env:
        first_task, left_task, right_task, callback_task = env["celery.task"].browse([row["id"] for row in rows])
        assert first_task.next_task_ids == left_task | right_task
        assert callback_task.previous_task_ids == left_task | right_task
        assert left_task.member_task_ids == right_task
        assert left_task.workflow_id.kind == "group" and left_task.workflow_id.parent_id.kind == "chord"
        root = first_task.workflow_root_id
        assert (root.kind, root.state, root.progress_label) == ("chain", "done", "4 of 4 done")
        assert env["celery.task"].search_count([("workflow_root_id", "=", root.id)]) == 4
    assert json.loads(rows[-1]["result"]) == [3, 3], "each member got the first step's result"


def test_a_chain_survives_a_worker_killed_mid_step(stack, fault_worker, broker, canvas):
    first = fault_worker(broker)
    stack.point_caller(harness.BROKERS[broker], first.queue)
    first.start(stack.app)
    with items(stack, 3) as (head, slow, tail):
        result = canvas.chain(
            canvas.signature(head.add, 1),
            canvas.signature(slow.slow_bump, 3.0, immutable=True),
            canvas.signature(tail.add, 5, immutable=True),
        ).delay()
    harness.wait_for(lambda: steps(stack, result.id)[1]["state"] == "started", 30, what="the slow step to start")
    first.kill()
    second = fault_worker(broker, name=first.name, queue=first.queue)
    second.start(stack.app)
    rows = wait_steps(stack, result.id, timeout=90)
    assert [row["state"] for row in rows] == ["done"] * 3
    assert rows[1]["attempts"] == 2, "the killed step ran again"
    assert [stack.item(item)["runs"] for item in (head.id, slow.id, tail.id)] == [1, 1, 1], "effects exist once"


def test_a_chord_of_a_thousand_members_runs_its_callback_once(stack, fault_worker, canvas, record_property):
    workers = [fault_worker("redis", concurrency=2) for _ in range(2)]
    queue = f"ct-test-{stack.run_id}-chord"
    stack.point_caller(harness.BROKERS["redis"], queue)
    for worker in workers:
        worker.queue = queue
        worker.start(stack.app)
    with items(stack, 1001) as records:
        *members, callback = records
        signatures = [canvas.signature(item.add, n, immutable=True) for n, item in enumerate(members)]
        result = canvas.chord(signatures, canvas.signature(callback.collect)).delay()
    rows = wait_steps(stack, result.id, timeout=300)
    assert [row["state"] for row in rows].count("done") == 1001
    assert json.loads(rows[-1]["result"]) == [n + 1 for n in range(1000)]
    assert stack.item(callback.id)["runs"] == 1, "the callback ran exactly once"
    hosts = {row["worker_host"] for row in rows}
    record_property("chord_hosts", sorted(hosts))
    assert hosts == {worker.name for worker in workers}, "both workers drained the members"

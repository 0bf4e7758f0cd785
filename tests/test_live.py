"""What the web clients get while tasks run: grouped notices, each user's choice, and live updates."""

import json
import time

import pytest

import harness

pytestmark = pytest.mark.odoo

PASSWORD = "celery-task-test-password"


def bus_messages(stack, channel, since_id, kind):
    """The payloads of ``kind`` notifications on ``channel`` (a list, as the bus stores it) after ``since_id``."""
    with stack.env() as env:
        env.cr.execute(
            "SELECT id, message FROM bus_bus WHERE id > %s AND channel = %s ORDER BY id",
            [since_id, json.dumps(channel, separators=(",", ":"))],
        )
        messages = [json.loads(message) for _, message in env.cr.fetchall()]
    return [message["payload"] for message in messages if message["type"] == kind]


def last_bus_id(stack):
    with stack.env() as env:
        env.cr.execute("SELECT COALESCE(max(id), 0) FROM bus_bus")
        return env.cr.fetchone()[0]


def partner_channel(stack, user_id):
    with stack.env() as env:
        return [stack.db, "res.partner", env["res.users"].browse(user_id).partner_id.id]


def user_who_wants(stack, choice):
    """A user who may write test items (its tasks can succeed), and who chose ``choice`` for notices."""
    user_id = stack.new_user(f"Wants {choice}", "base.group_user", "base.group_system", password=PASSWORD)
    with stack.env() as env:
        env["res.users"].browse(user_id).celery_task_notify = choice
    return user_id


def notices_for(stack, user_id, since, task_uuids, timeout=30):
    """Wait until no task of ``task_uuids`` waits to be told: the notices its user got meanwhile."""
    stack.wait_told(task_uuids, timeout)
    return bus_messages(stack, partner_channel(stack, user_id), since, "celery_task.summary")


def test_outcomes_arriving_together_make_one_notice_with_the_counts(stack, redis):
    user_id = user_who_wants(stack, "all")
    since = last_bus_id(stack)
    item_ids = [stack.new_item() for _ in range(6)]
    with stack.env(uid=user_id) as env:  # one commit: they all finish within a round or two
        items = env["task.test.item"].browse(item_ids)
        calls = [item.bump() for item in items[:5]] + [items[5].fail("no luck this time")]
    notices = notices_for(stack, user_id, since, [call.id for call in calls])
    told = sorted(task_id for notice in notices for task_id in notice["task_ids"])
    assert told == sorted(stack.task_id(call) for call in calls), "each outcome told once"
    assert len(notices) <= 3, f"grouped, not one per task: {notices}"
    failed = [notice for notice in notices if notice["type"] == "danger"]
    assert len(failed) == 1 and "no luck this time" in failed[0]["message"] and failed[0]["sticky"]
    if len(notices) == 1:
        assert notices[0]["message"].startswith("5 done, 1 failed")


def test_each_user_chooses_which_notices_they_get(stack, redis):
    users = {choice: user_who_wants(stack, choice) for choice in ("failures", "none")}
    since = last_bus_id(stack)
    calls = {}
    for choice, user_id in users.items():
        done = stack.call("bump", stack.new_item(), uid=user_id)
        failed = stack.call("fail", stack.new_item(), "broken for " + choice, uid=user_id)
        calls[choice] = (done, failed)
    got = {choice: notices_for(stack, users[choice], since, [c.id for c in calls[choice]]) for choice in users}
    assert [notice["task_ids"] for notice in got["failures"]] == [[stack.task_id(calls["failures"][1])]]
    assert "broken for failures" in got["failures"][0]["message"]
    assert got["none"] == [], "none: told nothing, and nothing left to tell"


def test_a_workflow_is_told_once_when_it_ends(stack, redis):
    from odoo.addons.celery_task import chain, signature

    user_id = user_who_wants(stack, "all")
    since = last_bus_id(stack)
    with stack.env(uid=user_id) as env:
        first, second, third = env["task.test.item"].create([{"name": f"step {n}"} for n in range(3)])
        result = chain(
            signature(first.add, 1),
            signature(second.slow_bump, 1.0, immutable=True),
            signature(third.add, 2, immutable=True),
        ).delay()
    with stack.env() as env:
        workflow = env["celery.task"].search([("uuid", "=", result.id)]).workflow_root_id
        steps = env["celery.task"].search([("workflow_root_id", "=", workflow.id)])
        step_ids, uuids = steps.ids, steps.mapped("uuid")
    notices = notices_for(stack, user_id, since, uuids)
    assert len(notices) == 1 and notices[0]["title"].startswith("Workflow finished: chain(")
    assert sorted(notices[0]["task_ids"]) == sorted(step_ids)
    assert notices[0]["message"].startswith("3 done")


def test_an_outcome_the_main_process_records_is_told_too(stack, redis):
    user_id = user_who_wants(stack, "all")
    since = last_bus_id(stack)
    result = stack.call("hard_limited", stack.new_item(), 10, uid=user_id)
    notices = notices_for(stack, user_id, since, [result.id])
    assert len(notices) == 1 and "time_limit of 2" in notices[0]["message"] and notices[0]["type"] == "danger"


def test_live_updates_are_a_few_per_second_however_many_tasks_change(stack, redis, record_property):
    channel = [stack.db, "celery_task.live"]
    item_ids = [stack.new_item() for _ in range(200)]
    since = last_bus_id(stack)
    started = time.monotonic()
    with stack.env() as env:
        calls = [item.slow_bump(0.02) for item in env["task.test.item"].browse(item_ids)]
    for call in calls:
        stack.wait_row(call.id, timeout=120)
    seconds = time.monotonic() - started
    updates = bus_messages(stack, channel, since, "celery_task.changed")
    rate = len(updates) / seconds
    figures = f"{len(updates)} live updates in {seconds:.1f} s for 200 tasks ({rate:.2f}/s)"
    record_property("live_updates", figures)
    print(figures)
    assert len(updates) >= 1 and rate <= 2.5, f"{len(updates)} updates in {seconds:.1f} s"
    assert updates[0] == {}, "no task data on the shared channel: the reload reads through access rules"


def main_process_sessions(stack, worker):
    """The backend pids of the worker's main process's connections to the test database for its jobs."""
    from odoo.addons.celery_task.worker.connections import JOBS_ROLE

    with stack.env() as env:
        env.cr.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            [stack.db, f"odoo-{worker.process.pid} {JOBS_ROLE}"],
        )
        return {pid for (pid,) in env.cr.fetchall()}


def test_the_main_process_keeps_its_connection_and_replaces_one_the_server_ended(stack, redis):
    kept = harness.wait_for(lambda: main_process_sessions(stack, redis), 10, what="the relay's session")
    time.sleep(2)  # two relay rounds at least
    assert main_process_sessions(stack, redis) == kept and len(kept) == 1, "one session, the same round after round"
    with stack.env() as env:
        env.cr.execute("SELECT pg_terminate_backend(%s)", list(kept))
    log_before = len(redis.log())
    sessions = harness.wait_for(
        lambda: main_process_sessions(stack, redis) - kept, 10, what="a new session for the one the server ended"
    )
    assert len(sessions) == 1
    stack.wait_row(stack.call("bump", stack.new_item()).id)
    since = redis.log()[log_before:]
    assert "terminating connection" not in since and "server closed the connection" not in since, since


def test_databases_beyond_the_kept_connections_get_one_for_the_job_and_evict_none(stack, monkeypatch):
    from odoo.addons.celery_task.worker import connections

    def backend(dbname):
        with connections.main_process_cursor(dbname) as cr:
            cr.execute("SELECT pg_backend_pid() AS pid")
            return cr.fetchone()["pid"]

    connections.close_all()
    monkeypatch.setattr(connections, "MAIN_PROCESS_CONNECTIONS", 1)
    try:
        kept = backend(stack.db)
        others = [backend(stack.other_db), backend(stack.other_db)]
        assert backend(stack.db) == kept, "the connection kept first is not evicted by another database's jobs"
        assert others[0] != others[1], "a database beyond the kept ones gets a connection for the job only"

        def closed():
            with stack.env() as env:
                env.cr.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [others])
                return env.cr.fetchone()[0] == 0

        harness.wait_for(closed, 5, what="the job's connections to be closed after their job")
    finally:
        connections.close_all()

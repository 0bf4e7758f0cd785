"""A real celery beat reads periodic tasks from Odoo and notices edits without a restart."""

import datetime
import json
import time

import pytest

import harness

pytestmark = pytest.mark.odoo

ADMIN_UID = 2
N = 5


@pytest.fixture
def start_beat(stack, redis):
    """Start beat with the given entry point, sending to the redis worker's queue; stopped afterwards."""
    started = []

    def start(entry="odoo_celery.py"):
        command = stack.home.entry_command(entry)
        log_path = stack.log_dir / f"beat-{time.monotonic_ns()}.log"
        entry = [*command, "-c", str(stack.config_path)]
        beat = harness.Beat(stack.config_path, "beat", redis.queue, log_path, env=redis.env, entry=entry)
        started.append(beat.start())
        beat.wait_started()
        return beat

    yield start
    for beat in started:  # first: a beat still running writes its tasks' runs, a conflict for the update below
        beat.stop()
    with stack.env() as env:
        env.cr.execute("UPDATE celery_periodic_task SET enabled = false")


def create_periodic(stack, item_id, **values):
    with stack.env(uid=ADMIN_UID) as env:
        periodic = env["celery.periodic.task"].create(
            {
                "name": "bump",
                "task": "task.test.item.bump",
                "record_ids": json.dumps([item_id]),
                "kwargs": '{"amount": 1}',
                "interval_number": 1,
                "interval_unit": "seconds",
                **values,
            }
        )
        return periodic.id


def edit_periodic(stack, periodic_id, **values):
    with stack.env(uid=ADMIN_UID) as env:
        env["celery.periodic.task"].browse(periodic_id).write(values)
    return time.monotonic()


def periodic_row(stack, periodic_id):
    with stack.env() as env:
        env.cr.execute("SELECT * FROM celery_periodic_task WHERE id = %s", [periodic_id])
        return env.cr.dictfetchone()


def runs(stack, periodic_id):
    """The runs counted on the periodic task, the tasks it enqueued, and those the worker finished."""
    with stack.env() as env:
        env.cr.execute(
            """SELECT p.total_run_count, count(t.id), count(t.id) FILTER (WHERE t.state = 'done')
                 FROM celery_periodic_task p LEFT JOIN celery_task t
                   ON t.record_ids = p.record_ids AND t.name = p.task AND t.create_date >= p.create_date
                WHERE p.id = %s
                GROUP BY p.id""",
            [periodic_id],
        )
        return env.cr.fetchone()


def test_every_second_runs_at_least_n_times_in_n_plus_2_seconds(stack, start_beat, record_property):
    beat = start_beat()
    item_id = stack.new_item()
    periodic_id = create_periodic(stack, item_id)
    time.sleep(N + 2)
    counted, enqueued, done = runs(stack, periodic_id)
    figures = f"beat: {enqueued} runs enqueued, {done} done by the worker in {N + 2} s (every second, N={N})"
    record_property("beat_figures", figures)
    print(figures)
    assert done >= N, f"{figures}\n{beat.log_tail()}"
    assert counted == enqueued
    assert stack.item(item_id)["runs"] >= done
    assert beat.process.poll() is None


def test_edits_and_disabling_take_effect_without_restarting_beat(stack, start_beat, record_property):
    beat = start_beat()
    item_id = stack.new_item()
    periodic_id = create_periodic(stack, item_id, interval_number=1, interval_unit="hours")
    time.sleep(2.5)
    assert periodic_row(stack, periodic_id)["total_run_count"] in (None, 0), "not due for an hour"

    edited = edit_periodic(stack, periodic_id, interval_unit="seconds")
    harness.wait_for(lambda: periodic_row(stack, periodic_id)["total_run_count"], 10, what="the new schedule")
    schedule_latency = time.monotonic() - edited

    value = stack.item(item_id)["value"]
    edited = edit_periodic(stack, periodic_id, kwargs='{"amount": 100}')
    harness.wait_for(lambda: stack.item(item_id)["value"] >= value + 100, 10, what="a run with the new arguments")
    arguments_latency = time.monotonic() - edited

    disabled_at = datetime.datetime.utcnow()
    edit_periodic(stack, periodic_id, enabled=False)
    count_when_disabled = periodic_row(stack, periodic_id)["total_run_count"]
    time.sleep(3)
    row = periodic_row(stack, periodic_id)
    late_run = max((row["last_run_at"] - disabled_at).total_seconds(), 0.0)
    figures = (
        f"beat: schedule edit effective after {schedule_latency:.2f} s, argument edit seen done after "
        f"{arguments_latency:.2f} s, last run {late_run:.2f} s after disabling "
        f"({row['total_run_count'] - count_when_disabled} run(s) after the disable committed)"
    )
    record_property("beat_figures", figures)
    print(figures)
    assert schedule_latency < 4 and arguments_latency < 4, f"{figures}\n{beat.log_tail()}"
    assert row["total_run_count"] - count_when_disabled <= 1 and late_run < 1.5, figures
    assert beat.process.poll() is None, "no restart: the same beat process"


def test_odoo_bin_beat_disables_a_periodic_task_whose_task_is_gone(stack, start_beat):
    beat = start_beat("odoo-bin celery")
    assert "scheduler -> odoo.addons.celery_task.beat_scheduler.DatabaseScheduler" in beat.log()
    healthy = create_periodic(stack, stack.new_item(), name="healthy")
    broken = create_periodic(stack, stack.new_item(), name="broken")
    with stack.env() as env:
        env.cr.execute(
            """UPDATE celery_periodic_task SET task = 'task.test.item.uninstalled',
                      write_date = now() AT TIME ZONE 'UTC' WHERE id = %s""",
            [broken],
        )

    harness.wait_for(lambda: not periodic_row(stack, broken)["enabled"], 10, what="beat to disable the broken task")
    row = periodic_row(stack, broken)
    assert "task task.test.item.uninstalled no longer exists" in row["last_error"]
    runs = periodic_row(stack, healthy)["total_run_count"] or 0
    harness.wait_for(
        lambda: (periodic_row(stack, healthy)["total_run_count"] or 0) >= runs + 2, 10, what="the healthy task to go on"
    )
    assert beat.process.poll() is None, "beat did not crash"
    assert "Message Error" not in beat.log() and "did not run" not in beat.log()

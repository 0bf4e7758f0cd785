"""Periodic task records: who may schedule what, validation, and what one run records."""

import datetime
import json

import pytest

pytestmark = pytest.mark.odoo

ADMIN_UID = 2


@pytest.fixture(scope="module")
def manager(stack):
    """A Celery Manager who is no administrator."""
    return stack.new_user("Scheduler", "base.group_user", "celery_task.group_celery_manager")


def periodic_values(item_id, **values):
    return {
        "name": "bump every minute",
        "task": "task.test.item.bump",
        "record_ids": json.dumps([item_id]),
        "kwargs": '{"amount": 2}',
        "interval_number": 1,
        "interval_unit": "minutes",
        **values,
    }


def test_only_registered_tasks_can_be_chosen(stack):
    from odoo.exceptions import ValidationError

    with stack.env() as env:
        choices = dict(env["celery.periodic.task"]._fields["task"]._description_selection(env))
        assert {"task.test.item.bump", "task.test.item.progress", "res.users.present_gift"} <= set(choices)
        with pytest.raises(ValidationError, match="not_a_task does not exist"):
            env["celery.periodic.task"].create(periodic_values(1, task="task.test.item.not_a_task"))


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"kwargs": '{"amount": 2, "colour": "red"}'}, "unexpected keyword argument 'colour'"),
        ({"args": "[1, 2]", "kwargs": "{}"}, "too many positional arguments"),
        ({"args": '{"not": "a list"}'}, "arguments must be a JSON list"),
        ({"record_ids": "[1, true]"}, "Record IDs must be a JSON list of integers"),
        ({"kwargs": "{amount: 2}"}, "invalid JSON"),
        ({"interval_number": 0}, "invalid schedule"),
        ({"schedule_type": "crontab", "cron_minute": "61"}, "invalid schedule"),
        ({"schedule_type": "crontab", "cron_day_of_week": "someday"}, "invalid schedule"),
    ],
)
def test_a_periodic_task_that_cannot_run_is_refused(stack, values, error):
    from odoo.exceptions import ValidationError

    with stack.env() as env, pytest.raises(ValidationError, match=error):
        env["celery.periodic.task"].create(periodic_values(stack.new_item(), **values))


def test_managers_schedule_as_themselves_only_administrators_as_others(stack, manager):
    from odoo.exceptions import AccessError

    item_id = stack.new_item()
    with stack.env(uid=manager) as env:
        own = env["celery.periodic.task"].create(periodic_values(item_id, enabled=False))
        assert own.user_id.id == manager
        own.write({"kwargs": '{"amount": 3}'})
        with pytest.raises(AccessError, match="run as another user"):
            own.write({"user_id": ADMIN_UID})
        own_id = own.id
    with stack.env(uid=ADMIN_UID) as env:
        admins = env["celery.periodic.task"].create(periodic_values(item_id, enabled=False))
        admins_id = admins.id
        admins.write({"user_id": manager})
        admins.write({"user_id": ADMIN_UID})
    with stack.env(uid=manager) as env:
        periodic = env["celery.periodic.task"]
        with pytest.raises(AccessError, match="run as another user"):
            periodic.browse(admins_id).write({"kwargs": '{"amount": 50}'})
        with pytest.raises(AccessError, match="run as another user"):
            periodic.browse(admins_id).action_run_now()
        with pytest.raises(AccessError, match="run as another user"):
            periodic.create(periodic_values(item_id, user_id=ADMIN_UID))
        assert set(periodic.search([("id", "in", [own_id, admins_id])]).ids) == {own_id, admins_id}


def test_run_now_records_the_task_through_the_outbox(stack, manager):
    item_id = stack.new_item()
    with stack.env(uid=manager) as env:
        periodic = env["celery.periodic.task"].create(periodic_values(item_id, queue="ct-test-nowhere", enabled=False))
        periodic.action_run_now()
        env.cr.execute("SELECT * FROM celery_task WHERE id = %s", [periodic.last_task_id.id])
        task = env.cr.dictfetchone()
        assert (task["name"], task["user_id"], task["queue"], task["state"]) == (
            "task.test.item.bump",
            manager,
            "ct-test-nowhere",
            "pending",
        )
        assert (task["record_ids"], json.loads(task["args"])) == (f"[{item_id}]", {"args": [], "kwargs": {"amount": 2}})
        assert periodic.total_run_count == 1 and periodic.last_run_at and not periodic.last_error
        env.cr.rollback()


def test_a_periodic_task_whose_task_is_gone_is_disabled_with_a_message(stack):
    item_id = stack.new_item()
    with stack.env() as env:
        periodic = env["celery.periodic.task"].create(periodic_values(item_id))
        env.cr.execute("UPDATE celery_periodic_task SET task = 'task.test.item.removed' WHERE id = %s", [periodic.id])
        periodic.invalidate_recordset()
        assert periodic not in env["celery.periodic.task"]._scheduled()
        assert periodic._run_scheduled() is None
        assert not periodic.enabled
        assert "task task.test.item.removed no longer exists" in periodic.last_error
        env.cr.rollback()


def test_zoned_crontab_reads_its_own_wall_clock(stack):
    from celery.schedules import crontab

    from odoo.addons.celery_task.schedules import ZonedCrontab

    utc = datetime.timezone.utc
    last_run = datetime.datetime(2026, 3, 1, 22, 0, tzinfo=utc)  # 07:00 in Tokyo
    now = datetime.datetime(2026, 3, 1, 22, 30, tzinfo=utc)  # 07:30 in Tokyo
    eight_in_tokyo = ZonedCrontab(minute="0", hour="8", zone="Asia/Tokyo", nowfun=lambda: now, app=stack.app)
    eight_utc = crontab(minute="0", hour="8", nowfun=lambda: now, app=stack.app)
    assert eight_in_tokyo.remaining_estimate(last_run) == datetime.timedelta(minutes=30)
    assert eight_utc.remaining_estimate(last_run) == datetime.timedelta(hours=9, minutes=30)
    assert eight_in_tokyo.is_due(last_run) == (False, 1800)
    in_tokyo = ZonedCrontab(minute="0", hour="8", zone="Asia/Tokyo")
    assert in_tokyo == ZonedCrontab(minute="0", hour="8", zone="Asia/Tokyo")
    assert in_tokyo != ZonedCrontab(minute="0", hour="8", zone="Europe/Brussels")

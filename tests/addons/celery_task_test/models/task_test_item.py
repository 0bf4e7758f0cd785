"""A model whose decorated methods exercise every path of the addon."""

import json
import os
import time

from odoo import fields, models
from odoo.exceptions import UserError

from odoo.addons.celery_task import RetryableError, celeryTask

OTHER_DB = os.environ.get("CELERY_TASK_TEST_OTHER_DB", "celery_task_test_other")


class TaskTestItem(models.Model):
    _name = "task.test.item"
    _description = "Task test item"

    name = fields.Char()
    value = fields.Integer()
    note = fields.Char()
    runs = fields.Integer()

    @celeryTask(model="task.test.item", name="bump")
    def bump(self, amount=1):
        for item in self:
            item.value += amount
            item.runs += 1
        return {"ids": self.ids, "values": self.mapped("value")}

    @celeryTask(model="task.test.item")
    def echo(self, *args, **kwargs):
        """Return what arrived, with the type of each argument, to check the round trip."""
        return {
            "args": list(args),
            "kwargs": kwargs,
            "types": [type(arg).__name__ for arg in args]
            + sorted(f"{k}:{type(v).__name__}" for k, v in kwargs.items()),
            "context": {key: self.env.context.get(key) for key in ("lang", "tz", "probe", "allowed_company_ids")},
            "uid": self.env.uid,
            "su": self.env.su,
        }

    @celeryTask(model="task.test.item", name="progress")
    def report_progress(self, steps=3, pause=0.4):
        task = self.env.context["celeryTask"]
        for step in range(1, steps + 1):
            task.update_state(state="PROGRESS", meta={"current": step, "total": steps, "message": f"step {step}"})
            time.sleep(pause)
        return steps

    @celeryTask(model="task.test.item", name="read_parameter")
    def read_parameter(self, key):
        """A cached read (``get_param`` is ormcached): it only changes when the worker saw the signal."""
        return self.env["ir.config_parameter"].sudo().get_param(key)

    @celeryTask(model="task.test.item", name="write_note")
    def write_note(self, note):
        self.write({"note": note})
        return note

    @celeryTask(model="task.test.item", name="write_note_sudo", sudo=True)
    def write_note_sudo(self, note):
        self.write({"note": note})
        return self.env.su

    @celeryTask(model="task.test.item", name="in_other_db", dbname=OTHER_DB)
    def create_in_other_db(self, name):
        return self.create({"name": name}).id

    @celeryTask(model="task.test.item", name="slow_bump")
    def slow_bump(self, seconds=1.0):
        """Read, work, write: two of these on one record overlap, and the later write conflicts."""
        self.mapped("value")  # the transaction's snapshot is taken at its first read
        time.sleep(seconds)
        for item in self:
            item.value += 1
            item.runs += 1
        return self.mapped("value")

    @celeryTask(model="task.test.item", name="soft_limited", soft_time_limit=1)
    def soft_limited(self, seconds=5.0):
        self.write({"note": "soft limited"})
        time.sleep(seconds)

    @celeryTask(model="task.test.item", name="hard_limited", time_limit=2)
    def hard_limited(self, seconds=10.0):
        self.write({"note": "hard limited"})
        time.sleep(seconds)

    @celeryTask(model="task.test.item", name="fail")
    def fail(self, message="broken on purpose"):
        self.write({"note": "must be rolled back"})
        raise UserError(message)

    @celeryTask(model="task.test.item", name="flaky", max_retries=3, retry_backoff=0.2)
    def flaky(self, succeed_on=2):
        attempt = self.env.context["celeryTask"].request.retries + 1
        for item in self:
            item.runs += 1
        if attempt < succeed_on:
            raise RetryableError(f"attempt {attempt} of {succeed_on}")
        return attempt

    @celeryTask(model="task.test.item", name="flaky_value", max_retries=1, retry_for=(ValueError,), retry_backoff=0.2)
    def flaky_value(self, succeed_on=3):
        attempt = self.env.context["celeryTask"].request.retries + 1
        self.write({"note": f"attempt {attempt}"})
        if attempt < succeed_on:
            raise ValueError(f"attempt {attempt} of {succeed_on}")
        return attempt

    @celeryTask(model="task.test.item", name="flaky_later", max_retries=1, retry_backoff=4.0)
    def flaky_later(self, succeed_on=2):
        """Retries after 4 s, longer than the tests' schedule horizon: its next attempt waits in the database."""
        task = self.env["celery.task"].sudo().search([("uuid", "=", self.env.context["celeryTask"].request.id)])
        if task.attempts < succeed_on:
            raise RetryableError(f"attempt {task.attempts} of {succeed_on}")
        for item in self:
            item.runs += 1
        return task.attempts

    @celeryTask(model="task.test.item", name="add")
    def add(self, value, amount=1):
        """A workflow step: ``value + amount``, written to the item, and handed to the next step."""
        for item in self:
            item.value = value + amount
            item.runs += 1
        return value + amount

    @celeryTask(model="task.test.item", name="collect")
    def collect(self, values):
        """A chord's callback: keeps the results it was given, in the order it got them."""
        self.write({"note": json.dumps(values)})
        for item in self:
            item.runs += 1
        return values

    @celeryTask(model="task.test.item", name="picky")
    def picky(self, value=0):
        """Fails until its item's note says ``fixed``: a step to requeue once the cause is gone."""
        if self.note != "fixed":
            raise UserError(f"{self.name} is not fixed yet")
        for item in self:
            item.runs += 1
        return value

    @celeryTask(model="task.test.item", name="unique_bump", unique=True)
    def unique_bump(self, amount=1):
        """Unique by its records and arguments: an equal call while one waits returns that one."""
        for item in self:
            item.value += amount
            item.runs += 1
        return self.mapped("value")

    @celeryTask(model="task.test.item", name="tagged", unique=lambda records, tag, seconds=0: tag, unique_running=True)
    def tagged(self, tag, seconds=0):
        """Unique by its tag, also while it runs."""
        time.sleep(seconds)
        for item in self:
            item.runs += 1
        return tag

    @celeryTask(model="task.test.item", name="limited", concurrency=2)
    def limited(self, seconds=0.5):
        """At most two at once, everywhere; its start and end are on its task record."""
        self.mapped("value")
        time.sleep(seconds)
        for item in self:
            item.runs += 1
        return seconds

    @celeryTask(model="task.test.item", name="geocode", limit="ct_test_geocoding")
    def geocode(self, seconds=0.3):
        """Counts against a limit named apart from the task, sized by a celery.task.limit record."""
        time.sleep(seconds)
        for item in self:
            item.runs += 1
        return seconds

    @celeryTask(model="task.test.item", name="rated", rate_limit="30/m")
    def rated(self):
        for item in self:
            item.runs += 1

    @celeryTask(model="task.test.item", name="bad_key", unique=lambda records: len(records))
    def bad_key(self):
        """Its unique key is not a string: every call is refused."""

    @celeryTask(model="task.test.item", name="raising_key", unique=lambda records: records.no_such_field)
    def raising_key(self):
        """Its unique key function raises: every call is refused."""

    def not_a_task(self):
        self.write({"note": "undecorated method ran"})

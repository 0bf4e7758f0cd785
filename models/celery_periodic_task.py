"""Periodic tasks kept in the database: which decorated method celery beat calls, on what, and when.

``beat_scheduler.DatabaseScheduler`` reads the enabled records and notices edits while it runs.
A run goes through the outbox like any call of the method, as the record's user.
"""

import dataclasses
import json
import logging
import zoneinfo

from celery.schedules import ParseException

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, ValidationError

from odoo.addons.base.models.res_partner import _tz_get

from .. import outbox, schedules, task_specs
from ..task_record import NOW_UTC

_logger = logging.getLogger(__name__)

# Runs are recorded without touching write_date: beat reloads its schedule when write_date moves.
RECORD_RUN = f"""
    UPDATE celery_periodic_task
       SET last_run_at = {NOW_UTC}, total_run_count = COALESCE(total_run_count, 0) + 1,
           last_task_id = (SELECT id FROM celery_task WHERE uuid = %(uuid)s), last_error = NULL
     WHERE id = %(id)s
"""
RECORD_ERROR = "UPDATE celery_periodic_task SET last_error = %(error)s WHERE id = %(id)s"

CRON_FIELDS = ("cron_minute", "cron_hour", "cron_day_of_month", "cron_month_of_year", "cron_day_of_week")
SCHEDULE_FIELDS = ("schedule_type", "interval_number", "interval_unit", "timezone", *CRON_FIELDS)
CALL_FIELDS = ("task", "record_ids", "args", "kwargs", "user_id")


class CeleryPeriodicTask(models.Model):
    _name = "celery.periodic.task"
    _description = "Celery Periodic Task"
    _order = "name, id"

    name = fields.Char(required=True)
    task = fields.Selection(
        selection="_selection_task", required=True, help="A decorated method, by its task name <model>.<name>."
    )
    model_name = fields.Char("Model", compute="_compute_model_name")
    record_ids = fields.Char(
        "Record IDs",
        required=True,
        default="[]",
        help="JSON list of the ids of the records the method is called on; [] calls it on no record.",
    )
    args = fields.Text("Arguments", required=True, default="[]", help="JSON list of positional arguments.")
    kwargs = fields.Text("Keyword Arguments", required=True, default="{}", help="JSON object of keyword arguments.")
    user_id = fields.Many2one(
        "res.users", "Run As", required=True, default=lambda self: self.env.user, ondelete="restrict"
    )
    schedule_type = fields.Selection(
        [("interval", "Interval"), ("crontab", "Crontab")], "Schedule Type", required=True, default="interval"
    )
    interval_number = fields.Integer("Every", default=1)
    interval_unit = fields.Selection(
        [(unit, unit.capitalize()) for unit in schedules.INTERVAL_UNITS], "Unit", default="minutes"
    )
    cron_minute = fields.Char("Minute", default="*")
    cron_hour = fields.Char("Hour", default="*")
    cron_day_of_week = fields.Char("Day of Week", default="*", help="0-6, Sunday is 0; or mon-sun.")
    cron_day_of_month = fields.Char("Day of Month", default="*")
    cron_month_of_year = fields.Char("Month of Year", default="*")
    timezone = fields.Selection(_tz_get, required=True, default="UTC", help="The wall clock a crontab is read on.")
    queue = fields.Char(help="Celery queue of the runs; empty means the task's own queue.")
    enabled = fields.Boolean(default=True)
    schedule_display = fields.Char("Schedule", compute="_compute_schedule_display")
    last_run_at = fields.Datetime("Last Run", readonly=True, copy=False)
    total_run_count = fields.Integer("Runs", readonly=True, copy=False)
    last_task_id = fields.Many2one("celery.task", "Last Task", readonly=True, copy=False, ondelete="set null")
    last_error = fields.Text("Last Error", readonly=True, copy=False)

    @api.model
    def _selection_task(self):
        return [(name, name) for name in sorted(task_specs.SPECS) if self._registered_spec(name)]

    @api.model
    def _registered_spec(self, task_name):
        """The spec of ``task_name`` when a module installed in this database decorates it, else None."""
        spec = task_specs.SPECS.get(task_name)
        if spec is None or spec.model not in self.env:
            return None
        return spec if task_specs.is_decorated(type(self.env[spec.model]), spec.method) else None

    @api.depends("task")
    def _compute_model_name(self):
        for periodic in self:
            spec = task_specs.SPECS.get(periodic.task)
            periodic.model_name = spec.model if spec else False

    @api.depends(*SCHEDULE_FIELDS)
    def _compute_schedule_display(self):
        for periodic in self:
            if periodic.schedule_type == "interval":
                periodic.schedule_display = _(
                    "every %(number)s %(unit)s", number=periodic.interval_number, unit=periodic.interval_unit
                )
            else:
                cron = " ".join(periodic[name] or "*" for name in CRON_FIELDS)
                periodic.schedule_display = f"{cron} ({periodic.timezone})"

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            if vals.get("task"):
                self._check_task_exists(vals["task"])
        periodic_tasks = super().create(vals_list)
        periodic_tasks._check_run_as()
        return periodic_tasks

    def write(self, vals):
        self._check_run_as()
        if vals.get("task"):
            self._check_task_exists(vals["task"])
        result = super().write(vals)
        self._check_run_as()
        return result

    @api.model
    def _check_task_exists(self, task_name):
        """Say which task is unknown before the selection field refuses the value (17.0 does, in less words)."""
        if self._registered_spec(task_name) is None:
            raise ValidationError(
                _("Task %s does not exist: no module installed in this database decorates it.", task_name)
            )

    def _check_run_as(self):
        """Only administrators may schedule runs as another user: a run has that user's rights."""
        if self.env.su or self.env.user._is_system():
            return
        others = self.filtered(lambda periodic: periodic.user_id != self.env.user)
        if others:
            raise AccessError(
                _(
                    "Only administrators can manage periodic tasks that run as another user: %s",
                    ", ".join(others.mapped("name")),
                )
            )

    @api.constrains(*CALL_FIELDS, *SCHEDULE_FIELDS)
    def _check_definition(self):
        for periodic in self:
            periodic._call()
            periodic._celery_schedule()

    def _call(self):
        """The spec, records and arguments of one run, or a ValidationError that says what is wrong."""
        self.ensure_one()
        self._check_task_exists(self.task)
        spec = self._registered_spec(self.task)
        try:
            ids, args, kwargs = (json.loads(self[name]) for name in ("record_ids", "args", "kwargs"))
        except ValueError as exc:
            raise ValidationError(_("%(task)s: invalid JSON: %(error)s", task=self.name, error=exc)) from None
        if not (isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
            raise ValidationError(_("%s: Record IDs must be a JSON list of integers.", self.name))
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValidationError(_("%s: arguments must be a JSON list, keyword arguments a JSON object.", self.name))
        env = self.env(user=self.user_id.id, su=False, context=self.user_id.context_get())
        records = env[spec.model].browse(ids)
        try:
            spec.bind(records, args, kwargs)
        except TypeError as exc:
            raise ValidationError(str(exc)) from None
        return spec, records, args, kwargs

    def _celery_schedule(self):
        """The Celery schedule object of this record, or a ValidationError."""
        self.ensure_one()
        try:
            if self.schedule_type == "interval":
                return schedules.interval(self.interval_number, self.interval_unit)
            return schedules.ZonedCrontab(
                minute=self.cron_minute or "*",
                hour=self.cron_hour or "*",
                day_of_week=self.cron_day_of_week or "*",
                day_of_month=self.cron_day_of_month or "*",
                month_of_year=self.cron_month_of_year or "*",
                zone=self.timezone or "UTC",
            )
        except (ValueError, ParseException, zoneinfo.ZoneInfoNotFoundError) as exc:
            raise ValidationError(_("%(task)s: invalid schedule: %(error)s", task=self.name, error=exc)) from None

    def _enqueue(self):
        """Record one run in this transaction: the task in the outbox, the count on this record."""
        self.ensure_one()
        spec, records, args, kwargs = self._call()
        if self.queue:
            spec = dataclasses.replace(spec, queue=self.queue)
        result = outbox.enqueue(spec, records, args, kwargs)
        self.env.cr.execute(RECORD_RUN, {"id": self.id, "uuid": result.id})
        self.invalidate_recordset(["last_run_at", "total_run_count", "last_task_id", "last_error"])
        return result

    def action_run_now(self):
        """Run the selected periodic tasks once, now, besides their schedule."""
        self._check_run_as()
        for periodic in self:
            periodic._enqueue()
        return True

    @api.model
    def _scheduled(self):
        """The enabled periodic tasks; those whose task is gone are disabled with a message instead."""
        enabled = self.search([("enabled", "=", True)])
        return enabled - enabled._disable_gone()

    def _disable_gone(self):
        """Disable the periodic tasks whose task no longer exists, saying why; returns them."""
        gone = self.filtered(lambda periodic: not self._registered_spec(periodic.task))
        for periodic in gone:
            message = _(
                "Disabled by celery beat on %(date)s: task %(task)s no longer exists "
                "(no module installed in this database decorates it).",
                date=fields.Datetime.now(),
                task=periodic.task,
            )
            _logger.warning("celery_task beat: periodic task %s (#%s): %s", periodic.name, periodic.id, message)
            periodic.write({"enabled": False, "last_error": message})
        return gone

    def _run_scheduled(self):
        """One run for beat. Never raises: a broken periodic task must not stop beat."""
        self.ensure_one()
        if not self.exists() or not self.enabled or self._disable_gone():
            return None
        try:
            with self.env.cr.savepoint():
                return self._enqueue()
        except Exception as exc:
            _logger.warning("celery_task beat: periodic task %s (#%s) did not run", self.name, self.id, exc_info=True)
            self.env.cr.execute(RECORD_ERROR, {"id": self.id, "error": f"{type(exc).__name__}: {exc}"})
            return None

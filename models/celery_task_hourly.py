"""Tasks per hour, by state, task and model: what the "Tasks per Hour" chart counts.

A PostgreSQL view: the web client groups dates by day at the finest, so the hour is a column here.
"""

from odoo import fields, models

from .. import task_record


class CeleryTaskHourly(models.Model):
    _name = "celery.task.hourly"
    _description = "Celery Tasks per Hour"
    _auto = False
    _order = "hour desc"

    hour = fields.Char(readonly=True, help="The hour the tasks were called in (UTC).")
    hour_start = fields.Datetime("From", readonly=True)
    state = fields.Selection(task_record.STATE_LABELS, readonly=True)
    name = fields.Char("Task", readonly=True)
    model_name = fields.Char("Model", readonly=True)
    user_id = fields.Many2one("res.users", "User", readonly=True)
    tasks = fields.Integer(readonly=True)

    def init(self):
        self.env.cr.execute(task_record.HOURLY_VIEW)

"""A named concurrency limit's size, editable while workers run: at most ``size`` of its tasks at once.

Tasks name their limit with ``@celeryTask(concurrency=N)`` (the limit is the task's own name) or
``limit="name"`` (shared by every task that names it). A record here overrides the decorator and
``celery_task_limits`` in the config; workers read it at every claim of a limited task.
"""

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

from .. import task_record, task_specs


class CeleryTaskLimit(models.Model):
    _name = "celery.task.limit"
    _description = "Celery Concurrency Limit"
    _order = "name"

    name = fields.Char(required=True, help="The limit's name: a task's name for concurrency=N, else its limit=.")
    size = fields.Integer(required=True, default=1, help="At most this many of its tasks run at once, everywhere.")
    task_names = fields.Char("Tasks", compute="_compute_usage", help="The decorated tasks that count against it.")
    running_count = fields.Integer("Running", compute="_compute_usage")
    deferred_count = fields.Integer("Waiting for a Slot", compute="_compute_usage")

    def init(self):
        self.env.cr.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS celery_task_limit_name_unique ON celery_task_limit (name)"
        )

    @api.constrains("size")
    def _check_size(self):
        for limit in self:
            if limit.size < 1:
                raise ValidationError(_("Limit %s: its size is a number of tasks at once, at least 1.", limit.name))

    def _compute_usage(self):
        tasks = self.env["celery.task"].sudo()
        for limit in self:
            names = sorted(name for name, spec in task_specs.SPECS.items() if spec.limit_name == limit.name)
            limit.task_names = ", ".join(names)
            unfinished = [("limit_name", "=", limit.name), ("done_at", "=", False)]
            limit.running_count = tasks.search_count([*unfinished, ("state", "=", task_record.STARTED)])
            limit.deferred_count = tasks.search_count([*unfinished, ("state", "=", task_record.DEFERRED)])

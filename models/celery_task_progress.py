"""Live progress of a running task, kept apart from the task row.

The worker commits the method's effects and the task's final state in one transaction; progress
is written meanwhile from another connection, so it must not touch the row that transaction
updates at its end.
"""

from odoo import fields, models


class CeleryTaskProgress(models.Model):
    _name = "celery.task.progress"
    _description = "Celery Task Progress"

    task_id = fields.Many2one("celery.task", required=True, ondelete="cascade")
    state = fields.Char()
    current = fields.Float()
    total = fields.Float()
    message = fields.Char()
    meta = fields.Text()

    def init(self):
        # One row per task (the worker's upsert needs it): an index, as celery.task's uuid.
        self.env.cr.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS celery_task_progress_task_unique ON celery_task_progress (task_id)"
        )

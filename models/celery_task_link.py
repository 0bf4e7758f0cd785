"""A workflow's order: this step waits for that one. Written with the steps, read by the worker's release."""

from odoo import fields, models


class CeleryTaskLink(models.Model):
    _name = "celery.task.link"
    _description = "Celery Workflow Link"
    _order = "successor_id, sequence"
    _log_access = False

    predecessor_id = fields.Many2one("celery.task", "Waited For", required=True, ondelete="cascade", index=True)
    successor_id = fields.Many2one("celery.task", "Waiting Step", required=True, ondelete="cascade")
    sequence = fields.Integer(help="The position of the predecessor's result among those the step receives.")

    def init(self):
        """A step's predecessors in order: its results, and its release's search from the last one."""
        self.env.cr.execute(
            "CREATE INDEX IF NOT EXISTS celery_task_link_successor_sequence_idx"
            " ON celery_task_link (successor_id, sequence)"
        )

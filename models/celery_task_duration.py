"""How long each task takes: median and 95th percentile per task name, for the pivot and graph views.

A PostgreSQL view over the done tasks still kept (see the retention), so the percentiles are
the database's own (``percentile_cont``), not an average of averages.
"""

from odoo import fields, models

from .. import compat, task_record


class CeleryTaskDuration(models.Model):
    _name = "celery.task.duration"
    _description = "Celery Task Durations"
    _auto = False
    _order = "p95 desc"

    name = fields.Char("Task", readonly=True)
    model_name = fields.Char("Model", readonly=True)
    runs = fields.Integer(readonly=True)
    p50 = fields.Float("Median (s)", readonly=True, digits=(16, 3), **{compat.AGGREGATOR: "max"})
    p95 = fields.Float("95th Percentile (s)", readonly=True, digits=(16, 3), **{compat.AGGREGATOR: "max"})
    longest = fields.Float("Longest (s)", readonly=True, digits=(16, 3), **{compat.AGGREGATOR: "max"})

    def init(self):
        self.env.cr.execute(task_record.DURATION_VIEW)

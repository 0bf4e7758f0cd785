"""How long each task takes: median and 95th percentile per task name, for the pivot and graph views.

A PostgreSQL view over the done tasks still kept (see the retention), so the percentiles are
the database's own (``percentile_cont``), not an average of averages.
"""

from odoo import fields, models

from .. import compat


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
        self.env.cr.execute(
            """
            CREATE OR REPLACE VIEW celery_task_duration AS (
                SELECT min(id) AS id, name, min(model_name) AS model_name, count(*) AS runs,
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM done_at - started_at)) AS p50,
                       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM done_at - started_at)) AS p95,
                       max(extract(epoch FROM done_at - started_at)) AS longest
                  FROM celery_task
                 WHERE state = 'done' AND started_at IS NOT NULL AND done_at IS NOT NULL
                 GROUP BY name
            )
            """
        )

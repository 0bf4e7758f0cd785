"""The queue_job side's records: ``touch`` and ``stamp`` as celery_task_bench has them, run by ``with_delay()``."""

import time

from odoo import fields, models


class QueueJobBenchItem(models.Model):
    _name = "qj.bench.item"
    _description = "queue_job benchmark item"

    value = fields.Integer()
    started = fields.Float(help="time.time() when the stamp job began, for the latency measurement")

    def touch(self, value):
        """The drain workload: write one field of one record."""
        self.write({"value": value})

    def stamp(self):
        """The latency probe: the first thing it does is read the clock."""
        self.write({"started": time.time()})

"""The records the benchmark's tasks write: one field per task, like the raw baseline's UPDATE."""

import time

from odoo import api, fields, models
from odoo.modules.registry import Registry

from odoo.addons.celery_task import celeryTask
from odoo.addons.celery_task.app import celery_app


class BenchItem(models.Model):
    _name = "ct.bench.item"
    _description = "Celery task benchmark item"

    value = fields.Integer()
    started = fields.Float(help="time.time() when the stamp task began, for the latency measurement")
    results_count = fields.Integer(help="how many results the chord callback received")

    @celeryTask(model="ct.bench.item", name="touch")
    def touch(self, value):
        """The drain workload: write one field of one record."""
        self.write({"value": value})

    @celeryTask(model="ct.bench.item", name="touch_unique", unique=True)
    def touch_unique(self, value):
        """``touch`` as a unique task: what the identity key and the unique index add to a call."""
        self.write({"value": value})

    @celeryTask(model="ct.bench.item", name="touch_limited", concurrency=2)
    def touch_limited(self, value):
        """``touch`` under a concurrency limit of 2 (the bench worker's pool size): what a slot costs."""
        self.write({"value": value})

    @celeryTask(model="ct.bench.item", name="chord_done")
    def chord_done(self, results):
        """A chord's callback: it receives the members' results, in order."""
        self.write({"results_count": len(results), "started": time.time()})

    @celeryTask(model="ct.bench.item", name="stamp")
    def stamp(self):
        """The latency probe: the first thing it does is read the clock."""
        self.write({"started": time.time()})


@celery_app.task(name="ct_bench.orm_touch", shared=False, ignore_result=True)
def orm_touch(dbname, item_id, value):
    """The Odoo floor: ``touch``'s write as a plain Celery task, without the addon's outbox, claim or record."""
    with Registry(dbname).cursor() as cr:
        env = api.Environment(cr, api.SUPERUSER_ID, {})  # held: the commit only flushes live environments
        env["ct.bench.item"].browse(item_id).write({"value": value})

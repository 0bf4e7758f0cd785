"""``ct.bench.item`` as the bench addon has it, in a database without celery_task (same dependencies: bus)."""

from odoo import fields, models


class BenchItem(models.Model):
    _name = "ct.bench.item"
    _description = "Celery task benchmark item (floor)"

    value = fields.Integer()
    started = fields.Float()

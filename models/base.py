"""``records.with_delay(**options).method(*args)`` on every model: queue_job's spelling of a call with options."""

from odoo import models

from ..celery_task import Delayed


class Base(models.AbstractModel):
    _inherit = "base"

    def with_delay(self, **options):
        """Call a method decorated with ``@celeryTask`` with options of this call only, as OCA queue_job spells it.

        ``eta``, ``countdown``, ``expires``, ``priority`` (0 first, 9 last), ``queue``, ``max_retries``,
        ``time_limit``, ``soft_time_limit``, ``unique`` (queue_job's ``identity_key``). Returns what a
        plain call returns; a bad option or an undecorated method raises at once, and nothing is written.
        """
        return Delayed(self, options)

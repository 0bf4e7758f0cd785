"""Shipments booked with a carrier in the background: queue_job's code, converted (docs/from-queue-job.md).

Each line that changed says what it was for queue_job.
"""

from odoo import fields, models

from odoo.addons.celery_task import RetryableError, celeryTask, chain, signature  # queue_job: delay, exception, job


class ExampleShipment(models.Model):
    _name = "example.shipment"
    _description = "Shipment"

    name = fields.Char(required=True)
    carrier_up = fields.Boolean(default=True)
    label = fields.Char()
    notified = fields.Boolean()

    def action_book(self):
        for shipment in self:
            # queue_job: with_delay(priority=5, max_retries=3, channel="root.carrier", identity_key=identity_exact)
            shipment.with_delay(priority=5, max_retries=3, identity_key=True).book_label("express")

    def action_book_and_notify(self):
        # queue_job: chain(self.delayable(priority=5).book_label("express"), self.delayable().notify_customer()).delay()
        chain(
            signature(self.book_label, "express").set(priority=5),
            signature(self.notify_customer, immutable=True),
        ).delay()

    # queue_job: a queue.job.function record gave it channel root.carrier (capacity 1: the config's
    # channels = root.carrier:1) and retry_pattern {1: 30}: here a limit of 1 and a backoff of 30 s.
    @celeryTask(model="example.shipment", limit="example_carrier", retry_backoff=30)
    def book_label(self, service):
        if not self.carrier_up:
            raise RetryableError("the carrier is down")  # queue_job: RetryableJobError(..., seconds=30)
        self.label = f"{service}-{self.name}"
        return self.label

    @celeryTask(model="example.shipment")  # queue_job: no decorator, any method could be delayed
    def notify_customer(self):
        self.notified = True

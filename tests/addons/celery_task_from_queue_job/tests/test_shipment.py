"""The addon's own tests, in Odoo's TransactionCase: what queue_job's trap_jobs() did, with trap_tasks()."""

from odoo.tests import TransactionCase, tagged

from odoo.addons.celery_task.testing import trap_tasks  # queue_job: from ..tests.common import trap_jobs


@tagged("post_install", "-at_install")
class TestShipment(TransactionCase):
    def setUp(self):
        super().setUp()
        self.shipment = self.env["example.shipment"].create({"name": "S1"})

    def test_booking_is_queued_with_its_options(self):
        with trap_tasks() as trap:  # queue_job: trap_jobs()
            self.shipment.action_book()
        trap.assert_count(1)  # queue_job: trap.assert_jobs_count(1)
        trap.assert_called(  # queue_job: trap.assert_enqueued_job(..., properties=dict(priority=5, ...))
            self.shipment.book_label, args=("express",), priority=5, max_retries=3, identity_key=True
        )
        self.assertFalse(self.shipment.label, "nothing ran yet")
        trap.run()  # queue_job: trap.perform_enqueued_jobs()
        self.assertEqual(self.shipment.label, "express-S1")

    def test_booking_then_notice_is_one_workflow(self):
        tasks = self.env["celery.task"].search_count([])
        with trap_tasks() as trap:
            self.shipment.action_book_and_notify()
        self.assertEqual(len(trap.kept), 1, "the chain, kept whole")
        trap.run()
        self.assertEqual(self.shipment.label, "express-S1")
        self.assertTrue(self.shipment.notified)
        self.assertEqual(self.env["celery.task"].search_count([]), tasks, "no task record written")

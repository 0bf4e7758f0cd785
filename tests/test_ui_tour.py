"""Browser test in Odoo's convention: the task list and a task form in headless Chromium.

Odoo's runner runs it (``--test-tags /celery_task:TestTaskUiTour``); tests/test_ui_browser.py
starts that runner from the pytest suite and reports what the browser saw.
"""

import datetime
import json
import uuid

from odoo.tests import HttpCase, tagged

from odoo.addons.celery_task.task_record import INSERT_TASK

# (state, progress (current, total, message), error)
TASKS = [
    ("scheduled", None, None),
    ("pending", None, None),
    ("started", (2, 4, "step 2 of 4"), None),
    ("done", (4, 4, "all done"), None),
    ("failed", (1, 4, "step 1 of 4"), "ValueError: the remote service said no"),
]


@tagged("post_install", "-at_install", "is_tour")
class TestTaskUiTour(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        now = datetime.datetime.utcnow().replace(microsecond=0)
        partner = cls.env.ref("base.partner_admin")
        cls.env.cr.execute("DELETE FROM celery_task")  # the tours count what they see: only these tasks
        for state, progress, error in TASKS:
            cls.env.cr.execute(
                INSERT_TASK,
                {
                    "uuid": str(uuid.uuid4()),
                    "name": f"res.partner.tour_{state}",
                    "dbname": cls.env.cr.dbname,
                    "uid": cls.env.ref("base.user_admin").id,
                    "model": "res.partner",
                    "method": f"tour_{state}",
                    "ids": json.dumps(partner.ids),
                    "args": '{"args":[],"kwargs":{}}',
                    "context": "{}",
                    "queue": "celery",
                    "priority": None,
                    "eta": now + datetime.timedelta(days=30) if state == "scheduled" else None,
                    "expires_at": None,
                    "call_repr": f"res.partner({partner.id},).tour_{state}()",
                    "limit_name": None,
                    "max_retries": None,
                    "time_limit": None,
                    "soft_time_limit": None,
                    "traceparent": None,
                    "horizon": 60,
                    "now": now,
                },
            )
            task = cls.env["celery.task"].browse(cls.env.cr.fetchone()[0])
            started = now if state != "pending" else None
            task.write(
                {
                    "state": state,
                    "started_at": started,
                    "done_at": now if state in ("done", "failed") else None,
                    "exc_type": error and error.split(":")[0],
                    "exc_message": error and error.split(": ", 1)[1],
                    "traceback": error and f"Traceback (most recent call last):\n{error}",
                }
            )
            if progress:
                current, total, message = progress
                cls.env["celery.task.progress"].create(
                    {"task_id": task.id, "state": "PROGRESS", "current": current, "total": total, "message": message}
                )

    def test_task_list_and_form(self):
        self.start_tour("/web#action=celery_task.action_celery_task", "celery_task_ui_tour", login="admin")

    def test_reschedule(self):
        self.start_tour("/web#action=celery_task.action_celery_task", "celery_task_reschedule_tour", login="admin")
        task = self.env["celery.task"].search([("name", "=", "res.partner.tour_scheduled")])
        self.assertEqual((task.state, task.eta.date()), ("scheduled", datetime.date(2031, 1, 15)))

    def test_dashboard(self):
        self.start_tour("/web#action=celery_task.action_celery_dashboard", "celery_task_dashboard_tour", login="admin")

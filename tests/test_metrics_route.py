"""Odoo's own test of the metrics route (``/celery_task/metrics``), run by Odoo's runner from
tests/test_ui_browser.py: a Celery manager's session or the token, nobody else."""

from prometheus_client.parser import text_string_to_metric_families

from odoo.tests import HttpCase, tagged

from odoo.addons.celery_task.controllers.metrics import TOKEN_PARAM

ROUTE = "/celery_task/metrics"


@tagged("post_install", "-at_install")
class TestMetricsRoute(HttpCase):
    def gauges(self, response):
        self.assertEqual(response.status_code, 200, response.text)
        self.assertTrue(response.headers["Content-Type"].startswith("text/plain"))
        return {family.name: family for family in text_string_to_metric_families(response.text)}

    def test_a_manager_reads_the_gauges_of_this_database(self):
        self.authenticate("admin", "admin")
        families = self.gauges(self.url_open(ROUTE))
        self.assertIn("celery_task_tasks", families)
        databases = {sample.labels["database"] for sample in families["celery_task_workers_seen"].samples}
        self.assertEqual(databases, {self.env.cr.dbname})

    def test_the_token_opens_it_and_nothing_else_does(self):
        self.assertEqual(self.url_open(ROUTE).status_code, 403, "no session, no token")
        self.env["ir.config_parameter"].sudo().set_param(TOKEN_PARAM, "s3cret-token")
        given = {"Authorization": "Bearer s3cret-token"}
        self.assertIn("celery_task_tasks", self.gauges(self.url_open(ROUTE, headers=given)))
        wrong = self.url_open(ROUTE, headers={"Authorization": "Bearer guess"})
        self.assertEqual(wrong.status_code, 403, "a wrong token")

    def test_a_user_who_is_no_manager_is_refused(self):
        user = self.env["res.users"].create({"name": "Plain", "login": "plain-metrics", "password": "plain-metrics-pw"})
        self.authenticate("plain-metrics", "plain-metrics-pw")
        self.assertEqual(self.url_open(ROUTE).status_code, 403)
        self.assertFalse(user.has_group("celery_task.group_celery_manager"))

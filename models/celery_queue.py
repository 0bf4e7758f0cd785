"""The queues tasks are bound for, each of which a Celery manager can pause and resume while workers run.

A paused queue still records its calls, but no worker starts a task of it and the relay publishes
none: every worker hears of the pause at once (a NOTIFY in ``postgres``, worker/background.py) and
stops consuming the queue, a worker started later reads it before it consumes, and a worker that
takes one of its messages anyway (one already on its way) puts the task back, unsent and unrun
(task_record.LOCK_AND_CLAIM). A resume publishes at once what waited, and workers consume the queue
again.
"""

import datetime

from odoo import api, fields, models

from .. import app, compat, task_record
from ..outbox import publish_after_commit


class CeleryQueue(models.Model):
    _name = "celery.queue"
    _description = "Celery Queue"
    _order = "name"

    name = fields.Char(required=True, readonly=True)
    paused = fields.Boolean(readonly=True)
    paused_at = fields.Datetime("Paused Since", readonly=True)
    paused_by = fields.Many2one("res.users", readonly=True)
    waiting_count = fields.Integer("Waiting", compute="_compute_load")
    running_count = fields.Integer("Running", compute="_compute_load")
    scheduled_count = fields.Integer("Scheduled", compute="_compute_load")
    oldest_waiting = fields.Char("Oldest Waiting", compute="_compute_load")
    consumers = fields.Integer(compute="_compute_consumers", help="Workers consuming it now, as they answer.")

    def init(self):
        self.env.cr.execute("CREATE UNIQUE INDEX IF NOT EXISTS celery_queue_name_unique ON celery_queue (name)")

    def _compute_load(self):
        now = fields.Datetime.now()
        self.env.cr.execute(task_record.QUEUES_LOAD, {"names": self.mapped("name")})
        load = {row[0]: row[1:] for row in self.env.cr.fetchall()}
        for queue in self:
            waiting, running, scheduled, oldest = load.get(queue.name, (0, 0, 0, None))
            queue.waiting_count, queue.running_count, queue.scheduled_count = waiting, running, scheduled
            queue.oldest_waiting = _age((now - oldest).total_seconds()) if oldest else False

    def _compute_consumers(self):
        consumers = app.consumers()
        dbname = self.env.cr.dbname
        for queue in self:
            queue.consumers = consumers.get(app.broker_queue(queue.name, dbname), (0, 0))[0]

    @api.model
    def action_open_queues(self):
        """The Queues view, listing every queue with unfinished tasks (and the default one) first."""
        self.env.cr.execute(
            task_record.RECORD_QUEUES, {"default": app.celery_app.conf.task_default_queue, "now": fields.Datetime.now()}
        )
        return self.env["ir.actions.actions"]._for_xml_id("celery_task.action_celery_queue")

    @api.model
    def pause(self, names):
        """Pause the queues named ``names`` (RPC: ``celery.queue.pause(["carrier"])``)."""
        return self._named(names).action_pause()

    @api.model
    def resume(self, names):
        """Resume the queues named ``names``."""
        return self._named(names).action_resume()

    def _named(self, names):
        found = self.search([("name", "in", list(names))])
        return found | self.create([{"name": name} for name in set(names) - set(found.mapped("name"))])

    def action_pause(self):
        """No worker starts a task of these queues until they resume; their calls are still recorded."""
        compat.check_access(self, "write")
        self.sudo().write({"paused": True, "paused_at": fields.Datetime.now(), "paused_by": self.env.uid})
        self._tell_workers()
        return True

    def action_resume(self):
        """Workers consume these queues again, and what waited in them is published at once."""
        compat.check_access(self, "write")
        self.sudo().write({"paused": False, "paused_at": False, "paused_by": False})
        self.env.cr.execute(task_record.RESUME_QUEUES, {"names": self.mapped("name")})
        for row in self.env.cr.dictfetchall():
            publish_after_commit(self.env, task_record.TaskMessage.from_row(self.env.cr.dbname, row))
        self._tell_workers()
        return True

    def _tell_workers(self):
        dbname = self.env.cr.dbname
        self.env.cr.postcommit.add(lambda: compat.notify_postgres(task_record.QUEUES_CHANNEL, dbname))


def _age(seconds):
    return str(datetime.timedelta(seconds=round(seconds)))

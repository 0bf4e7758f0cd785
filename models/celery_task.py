"""The task record: the outbox row the caller commits and the worker claims, runs and closes.

Users follow their tasks here: progress (read from the worker's progress row), timings, outcome;
Celery managers requeue and cancel them. Finished tasks are vacuumed after a retention period.
"""

import datetime
import json
import logging
import uuid

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError

from .. import compat, config, task_record, task_specs
from ..app import celery_app
from ..outbox import publish_after_commit

_logger = logging.getLogger(__name__)

RETENTION_PARAM = "celery_task.retention_days"
DEFAULT_RETENTION_DAYS = 30

# Fields that decide what a worker runs: only the decorator (in the caller's transaction) sets them.
PROTECTED_FIELDS = frozenset(
    {
        "uuid",
        "name",
        "dbname",
        "user_id",
        "model_name",
        "method_name",
        "record_ids",
        "args",
        "context",
        "queue",
        "priority",
        "eta",
        "expires_at",
        "call_repr",
        "workflow_id",
        "workflow_root_id",
        "receives",
        "identity_key",
        "unique_running",
        "limit_name",
        "max_retries",
        "time_limit",
        "soft_time_limit",
    }
)

CALL_OWN = "This call's own option; empty: its decorator's."

#: A scheduled task's eta, changed by a Celery manager (the form, or ``write`` by RPC): it is not on the broker.
RESCHEDULABLE = frozenset({"eta"})


def _percent(state, current, total):
    if state == task_record.DONE:
        return 100.0
    return min(100.0, 100.0 * current / total) if total else 0.0


class CeleryTask(models.Model):
    _name = "celery.task"
    _description = "Celery Task"
    _order = "id desc"

    # Few indexes on purpose: an update that changes an indexed column (or one in a partial index's
    # condition) writes an entry in every index. The unique constraint indexes uuid, user_id serves
    # the "own tasks" record rule, and the relay finds unfinished tasks by ``done_at IS NULL``
    # (set by every finished state, cleared by a requeue), not by ``state``: so the worker's claim
    # and the publisher's "sent" mark change no indexed column and, with the room the fill factor
    # leaves in each page, are HOT updates that touch no index.
    uuid = fields.Char("Task ID", required=True, readonly=True, copy=False)
    name = fields.Char("Task", required=True, readonly=True)
    dbname = fields.Char("Database", readonly=True)
    user_id = fields.Many2one("res.users", "User", readonly=True, index=True, ondelete="set null")
    model_name = fields.Char("Model", readonly=True)
    method_name = fields.Char("Method", readonly=True)
    record_ids = fields.Text("Record IDs", readonly=True)
    args = fields.Text("Arguments", readonly=True)
    context = fields.Text("Context", readonly=True)
    call_repr = fields.Char("Call", readonly=True)
    queue = fields.Char(readonly=True)
    priority = fields.Integer(readonly=True)
    eta = fields.Datetime("Run after", help="A scheduled task waits in the database until then; a manager may move it.")
    expires_at = fields.Datetime("Expires", readonly=True)
    max_retries = fields.Integer("Max Retries", readonly=True, help=CALL_OWN)
    time_limit = fields.Float("Time Limit (s)", readonly=True, help=CALL_OWN)
    soft_time_limit = fields.Float("Soft Time Limit (s)", readonly=True, help=CALL_OWN)
    traceparent = fields.Char(
        "Trace Parent", readonly=True, help="The W3C trace context of the call, when its process used OpenTelemetry."
    )
    state = fields.Selection(task_record.STATE_LABELS, default=task_record.PENDING, required=True, readonly=True)
    attempts = fields.Integer(readonly=True)
    sent_at = fields.Datetime("Sent", readonly=True)
    started_at = fields.Datetime("Started", readonly=True)
    done_at = fields.Datetime("Finished", readonly=True)
    worker_host = fields.Char("Worker", readonly=True)
    result = fields.Text(readonly=True)
    exc_type = fields.Char("Exception", readonly=True)
    exc_message = fields.Text("Error", readonly=True)
    traceback = fields.Text(readonly=True)
    duration = fields.Float("Duration (s)", compute="_compute_duration", digits=(16, 2))
    record_count = fields.Integer("Records", compute="_compute_record_count")
    progress_percent = fields.Float("Progress", compute="_compute_progress", digits=(16, 1))
    progress_current = fields.Float("Progress Current", compute="_compute_progress")
    progress_total = fields.Float("Progress Total", compute="_compute_progress")
    progress_message = fields.Char("Progress Message", compute="_compute_progress")
    progress_label = fields.Char("Steps", compute="_compute_progress")
    # Partial indexes: most tasks are in no workflow, and an index entry per NULL costs every insert.
    workflow_id = fields.Many2one(
        "celery.workflow", "Part of", readonly=True, index="btree_not_null", ondelete="set null"
    )
    workflow_root_id = fields.Many2one(
        "celery.workflow", "Workflow", readonly=True, index="btree_not_null", ondelete="set null"
    )
    receives = fields.Selection(
        [
            (task_record.RECEIVES_NOTHING, "Its own arguments only"),
            (task_record.RECEIVES_RESULT, "The previous step's result, first"),
            (task_record.RECEIVES_RESULTS, "The previous steps' results as a list, first"),
        ],
        default=task_record.RECEIVES_NOTHING,
        readonly=True,
    )
    identity_key = fields.Char(
        "Unique Key", readonly=True, help="Equal calls while a task with this key is open return that task."
    )
    open_key = fields.Char(readonly=True, help="The unique key while the task counts as open; empty after.")
    unique_running = fields.Boolean("Unique While Running", readonly=True)
    limit_name = fields.Char("Limit", readonly=True, help="The concurrency limit whose slots this task takes.")
    limit_size = fields.Integer("Limit Size", compute="_compute_limit_size")
    notice_pending = fields.Boolean(readonly=True, help="Its owner has not been told of its outcome yet.")
    waits_in_database = fields.Boolean(
        compute="_compute_waits_in_database", help="Scheduled, or a retry not sent yet: a manager may move its time."
    )
    previous_task_ids = fields.Many2many("celery.task", string="Previous Steps", compute="_compute_steps")
    next_task_ids = fields.Many2many("celery.task", string="Next Steps", compute="_compute_steps")
    member_task_ids = fields.Many2many("celery.task", string="Members", compute="_compute_steps")
    workflow_progress = fields.Char("Group Progress", compute="_compute_steps")

    def init(self):
        cr = self.env.cr
        # A unique index rather than _sql_constraints, which 19.0 ignores: the same on every series,
        # and the name of the constraint earlier versions made, so an upgrade keeps it.
        cr.execute("CREATE UNIQUE INDEX IF NOT EXISTS celery_task_uuid_unique ON celery_task (uuid)")
        cr.execute("ALTER TABLE celery_task SET (fillfactor = 80)")
        cr.execute("DROP INDEX IF EXISTS celery_task_relay_idx")  # on state: made every claim a non-HOT update
        cr.execute("CREATE INDEX IF NOT EXISTS celery_task_unfinished_idx ON celery_task (id) WHERE done_at IS NULL")
        # Unique tasks: one open task per key, whoever inserts it (the claim and the sent mark never
        # change open_key on other tasks, so they stay HOT).
        cr.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS celery_task_open_key_unique ON celery_task (open_key)"
            " WHERE open_key IS NOT NULL"
        )
        # Outcomes to tell, and the finished tasks of a period (charts, vacuum): columns the claim and
        # the sent mark never write.
        cr.execute("CREATE INDEX IF NOT EXISTS celery_task_notice_idx ON celery_task (id) WHERE notice_pending")
        cr.execute(
            "CREATE INDEX IF NOT EXISTS celery_task_done_at_idx ON celery_task (done_at) WHERE done_at IS NOT NULL"
        )
        # A limit's unfinished tasks: its deferred ones, the room it has (done_at already has a partial index).
        cr.execute(
            "CREATE INDEX IF NOT EXISTS celery_task_limit_unfinished_idx ON celery_task (limit_name, id)"
            " WHERE done_at IS NULL AND limit_name IS NOT NULL"
        )
        # The relay's expiry: only tasks given an expiry have an entry, so a backlog of others costs it nothing.
        cr.execute(
            "CREATE INDEX IF NOT EXISTS celery_task_expiring_idx ON celery_task (expires_at)"
            " WHERE done_at IS NULL AND expires_at IS NOT NULL"
        )
        # The publisher of due tasks: only tasks with an eta have an entry (the claim never writes eta).
        cr.execute(
            "CREATE INDEX IF NOT EXISTS celery_task_eta_idx ON celery_task (eta)"
            " WHERE done_at IS NULL AND eta IS NOT NULL"
        )

    @api.model_create_multi
    def create(self, vals_list):
        raise AccessError(_("Celery tasks are created by calling a decorated method, not through create()."))

    def write(self, vals):
        forbidden = PROTECTED_FIELDS.intersection(vals) - RESCHEDULABLE
        if forbidden:
            raise AccessError(
                _("These task fields decide what a worker runs and cannot be changed: %s", ", ".join(sorted(forbidden)))
            )
        if RESCHEDULABLE.intersection(vals):
            self._check_reschedulable(vals["eta"])
        return super().write(vals)

    def _check_reschedulable(self, eta):
        """A new eta only for the tasks that wait in the database (scheduled, or a retry not sent yet): the
        others are on the broker already, or finished."""
        published = self.filtered(lambda task: not task.waits_in_database)
        if published:
            raise UserError(
                _(
                    "Only tasks that wait in the database (scheduled, or a retry not sent yet) can be given "
                    "another time: %s",
                    ", ".join(published.mapped("display_name")),
                )
            )
        if not eta:
            raise UserError(_("A scheduled task needs a time to run at."))

    @api.depends("state", "started_at", "done_at")
    def _compute_duration(self):
        for task in self:
            end = task.done_at or (task.state == task_record.STARTED and fields.Datetime.now())
            task.duration = (end - task.started_at).total_seconds() if task.started_at and end else 0.0

    @api.depends("state", "sent_at")
    def _compute_waits_in_database(self):
        for task in self:
            task.waits_in_database = task.state == task_record.SCHEDULED or (
                task.state == task_record.RETRY and not task.sent_at
            )

    @api.depends("record_ids")
    def _compute_record_count(self):
        for task in self:
            task.record_count = len(task._record_id_list())

    def _compute_progress(self):
        """Read the live progress row the worker writes from its own connection while the task runs."""
        rows = (
            self.env["celery.task.progress"]
            .sudo()
            .search_fetch([("task_id", "in", self.ids)], ["task_id", "current", "total", "message"])
        )
        by_task = {row.task_id.id: row for row in rows}
        for task in self:
            row = by_task.get(task.id)
            current, total = (row.current, row.total) if row else (0.0, 0.0)
            task.progress_percent = _percent(task.state, current, total)
            task.progress_current = current
            task.progress_total = total
            task.progress_message = row.message if row else False
            task.progress_label = f"{current:g} / {total:g}" if total else False

    def _compute_limit_size(self):
        sizes = dict(self.env["celery.task.limit"].sudo().search([]).mapped(lambda limit: (limit.name, limit.size)))
        for task in self:
            spec = task_specs.SPECS.get(task.name)
            default = spec.default_limit_size if spec and spec.limit_name == task.limit_name else 1
            task.limit_size = sizes.get(task.limit_name, default) if task.limit_name else 0

    def _compute_steps(self):
        """The steps around each task in its workflow, and its group's progress (k of n done)."""
        links = self.env["celery.task.link"].sudo()
        for task in self:
            if not task.workflow_id:
                task.previous_task_ids = task.next_task_ids = task.member_task_ids = False
                task.workflow_progress = False
                continue
            task.previous_task_ids = links.search([("successor_id", "=", task.id)]).predecessor_id
            task.next_task_ids = links.search([("predecessor_id", "=", task.id)]).successor_id
            task.member_task_ids = task.workflow_id.task_ids - task
            group = task.workflow_id
            while group.parent_id and group.kind == "chain":
                group = group.parent_id
            task.workflow_progress = f"{group.kind} {group.progress_label}"

    def _record_id_list(self):
        try:
            ids = json.loads(self.record_ids or "[]")
        except ValueError:
            return []
        return [record_id for record_id in ids if isinstance(record_id, int)]

    def action_open_records(self):
        """Open the records the task was called on, in their own views."""
        self.ensure_one()
        if self.model_name not in self.env:
            raise UserError(_("Model %s does not exist in this database.", self.model_name))
        ids = self._record_id_list()
        action = {
            "type": "ir.actions.act_window",
            "name": self.env[self.model_name]._description,
            "res_model": self.model_name,
            "target": "current",
        }
        if len(ids) == 1:
            return {**action, "views": [(False, "form")], "res_id": ids[0]}
        return {**action, "views": [(False, "list"), (False, "form")], "domain": [("id", "in", ids)]}

    def action_requeue(self):
        """Run failed or cancelled tasks again: back to pending, published once this transaction commits."""
        wrong = self.filtered(lambda task: task.state not in task_record.REQUEUEABLE_STATES)
        if wrong:
            raise UserError(
                _("Only failed or cancelled tasks can be requeued: %s", ", ".join(wrong.mapped("display_name")))
            )
        now = fields.Datetime.now()
        expired = self.filtered(lambda task: task.expires_at and task.expires_at < now)
        if expired:
            raise UserError(
                _("These tasks expired and cannot run again: %s", ", ".join(expired.mapped("display_name")))
            )
        self.write(
            {
                "state": task_record.PENDING,
                "attempts": 0,
                "sent_at": False,
                "started_at": False,
                "done_at": False,
                "worker_host": False,
                "result": False,
                "exc_type": False,
                "exc_message": False,
                "traceback": False,
                "notice_pending": False,
            }
        )
        self.env["celery.task.progress"].sudo().search([("task_id", "in", self.ids)]).unlink()
        self.flush_recordset()
        cr = self.env.cr
        for task in self:
            values = {"uuid": str(uuid.uuid4()), "id": task.id, "horizon": config.schedule_horizon()}
            cr.execute(task_record.REQUEUE_TASK, values)
            row = cr.dictfetchone()
            cr.execute(task_record.REVIVE_DOWNSTREAM, {"id": task.id})
            if row["state"] == task_record.PENDING:
                publish_after_commit(self.env, task_record.TaskMessage.from_row(cr.dbname, row))
        self.invalidate_model(["uuid", "state", "done_at", "exc_type", "exc_message", "traceback"])
        return True

    def action_cancel(self):
        """Cancel tasks: a pending one is never run, a running one is revoked with terminate."""
        compat.check_access(self, "write")  # who may not cancel learns that first, whatever the state
        wrong = self.filtered(lambda task: task.state not in task_record.CANCELLABLE_STATES)
        if wrong:
            raise UserError(
                _(
                    "Only pending, waiting or running tasks can be cancelled: %s",
                    ", ".join(wrong.mapped("display_name")),
                )
            )
        running = self.filtered(lambda task: task.state == task_record.STARTED)
        values = {
            "state": task_record.CANCELLED,
            "done_at": fields.Datetime.now(),
            "exc_type": task_record.CANCELLED,
            "open_key": False,
        }
        who = self.env.user.name
        (self - running).write({**values, "exc_message": _("Cancelled by %s; no worker will run it.", who)})
        running.write({**values, "exc_message": _("Cancelled by %s while running; revoked.", who)})
        self.flush_recordset()
        for task in self.filtered("workflow_id"):
            self.env.cr.execute(task_record.CANCEL_DOWNSTREAM, {"id": task.id, "why": "was cancelled"})
        self.invalidate_model(["state", "done_at", "exc_type", "exc_message"])
        uuids = running.mapped("uuid")
        if uuids:
            self.env.cr.postcommit.add(lambda: self._revoke(uuids))
        return True

    @api.model
    def _revoke(self, uuids):
        """Terminate the running tasks; their state is already cancelled, so nothing they did commits."""
        try:
            celery_app.control.revoke(uuids, terminate=True)
        except Exception:
            _logger.warning("celery_task: could not revoke %s", uuids, exc_info=True)

    @api.depends("name", "uuid")
    def _compute_display_name(self):
        for task in self:
            task.display_name = f"{task.name} [{(task.uuid or '')[:8]}]"

    @api.model
    def _vacuum_finished(self):
        """Delete tasks finished more than ``celery_task.retention_days`` ago (default 30, 0 keeps all); cron."""
        raw = self.env["ir.config_parameter"].sudo().get_param(RETENTION_PARAM, DEFAULT_RETENTION_DAYS)
        try:
            days = int(raw)
        except ValueError:
            _logger.warning(
                "celery_task: %s=%r is not a number of days; using %d", RETENTION_PARAM, raw, DEFAULT_RETENTION_DAYS
            )
            days = DEFAULT_RETENTION_DAYS
        if days <= 0:
            return 0
        cutoff = fields.Datetime.now() - datetime.timedelta(days=days)
        # A workflow goes as a whole, once all its steps finished: a step's link is what its next one waits on.
        self.env.cr.execute(task_record.UNFINISHED_WORKFLOWS)
        unfinished = [row[0] for row in self.env.cr.fetchall()]
        old = self.sudo().search(
            [
                ("state", "in", task_record.FINISHED_STATES),
                ("done_at", "<", cutoff),
                ("workflow_root_id", "not in", unfinished),
            ]
        )
        count = len(old)
        old.unlink()
        self.env.cr.execute(task_record.DELETE_EMPTY_WORKFLOWS)
        _logger.info("celery_task: vacuumed %d task(s) finished before %s", count, cutoff)
        return count

    @api.model
    def get_dashboard(self):
        """What the dashboard shows, as the current user may see it: counts, queues, workers, oldest wait."""
        now = fields.Datetime.now()
        day_ago, hour_ago = now - datetime.timedelta(days=1), now - datetime.timedelta(hours=1)
        waiting_states = [task_record.WAITING, task_record.PENDING, task_record.DEFERRED, task_record.RETRY]
        due = ["|", ("eta", "=", False), ("eta", "<=", now)]
        waiting = [("state", "in", waiting_states), *due]
        states = dict(self._read_group([("done_at", "=", False)], ["state"], ["__count"]))
        finished = dict(self._read_group([("done_at", ">=", day_ago)], ["state"], ["__count"]))
        oldest = self._read_group(waiting, [], ["create_date:min"])[0][0]
        queues = self._read_group(waiting, ["queue", "dbname"], ["__count", "create_date:min"], order="queue, dbname")
        workers = self._read_group(
            [("worker_host", "!=", False), ("started_at", ">=", day_ago)],
            ["worker_host"],
            ["__count", "started_at:max"],
            order="started_at:max desc",
            limit=20,
        )
        hour = dict(
            self._read_group(
                [("worker_host", "!=", False), ("started_at", ">=", hour_ago)], ["worker_host"], ["__count"]
            )
        )
        return {
            "manager": self.env.user.has_group("celery_task.group_celery_manager"),
            "waiting": sum(count for state, count in states.items() if state in waiting_states),
            "running": states.get(task_record.STARTED, 0),
            "scheduled": states.get(task_record.SCHEDULED, 0),
            "done_today": finished.get(task_record.DONE, 0),
            "failed_today": finished.get(task_record.FAILED, 0),
            "oldest_waiting_seconds": (now - oldest).total_seconds() if oldest else None,
            "queues": [
                {"queue": queue, "database": dbname, "waiting": count, "oldest_seconds": (now - first).total_seconds()}
                for queue, dbname, count, first in queues
            ],
            "workers": [
                {"worker": host, "tasks_today": count, "tasks_last_hour": hour.get(host, 0), "last_started": last}
                for host, count, last in workers
            ],
        }

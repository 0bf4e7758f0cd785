"""The task record: the outbox row the caller commits and the worker claims, runs and closes."""

from odoo import _, api, fields, models
from odoo.exceptions import AccessError

STATES = [
    ("pending", "Pending"),
    ("started", "Started"),
    ("retry", "Waiting to retry"),
    ("done", "Done"),
    ("failed", "Failed"),
    ("cancelled", "Cancelled"),
]

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
    }
)


class CeleryTask(models.Model):
    _name = "celery.task"
    _description = "Celery Task"
    _order = "id desc"

    uuid = fields.Char("Task ID", required=True, readonly=True, index=True, copy=False)
    name = fields.Char("Task", required=True, readonly=True, index=True)
    dbname = fields.Char("Database", readonly=True)
    user_id = fields.Many2one("res.users", "User", readonly=True, index=True, ondelete="set null")
    model_name = fields.Char("Model", readonly=True, index=True)
    method_name = fields.Char("Method", readonly=True)
    record_ids = fields.Text("Record IDs", readonly=True)
    args = fields.Text("Arguments", readonly=True)
    context = fields.Text("Context", readonly=True)
    call_repr = fields.Char("Call", readonly=True)
    queue = fields.Char(readonly=True, index=True)
    priority = fields.Integer(readonly=True)
    eta = fields.Datetime("Run after", readonly=True)
    expires_at = fields.Datetime("Expires", readonly=True)
    state = fields.Selection(STATES, default="pending", required=True, readonly=True, index=True)
    attempts = fields.Integer(readonly=True)
    sent_at = fields.Datetime("Sent", readonly=True)
    started_at = fields.Datetime("Started", readonly=True)
    done_at = fields.Datetime("Finished", readonly=True)
    worker_host = fields.Char("Worker", readonly=True)
    result = fields.Text(readonly=True)
    exc_type = fields.Char("Exception", readonly=True)
    exc_message = fields.Text("Error", readonly=True)
    traceback = fields.Text(readonly=True)

    _sql_constraints = [("uuid_unique", "unique(uuid)", "A Celery task id is unique.")]

    def init(self):
        self.env.cr.execute(
            """CREATE INDEX IF NOT EXISTS celery_task_relay_idx ON celery_task (id)
               WHERE state IN ('pending', 'retry', 'started')"""
        )

    @api.model_create_multi
    def create(self, vals_list):
        raise AccessError(_("Celery tasks are created by calling a decorated method, not through create()."))

    def write(self, vals):
        forbidden = PROTECTED_FIELDS.intersection(vals)
        if forbidden:
            raise AccessError(
                _("These task fields decide what a worker runs and cannot be changed: %s", ", ".join(sorted(forbidden)))
            )
        return super().write(vals)

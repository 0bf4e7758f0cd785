"""Workflows (chain, group, chord) as their users follow them: one record per node, its steps and progress.

``canvas.py`` writes them with the steps' task records, in the caller's transaction; the ORM
only reads them, and cancels what has not run yet.
"""

from odoo import _, api, fields, models
from odoo.exceptions import AccessError

from .. import task_record

KINDS = [("chain", "Chain"), ("group", "Group"), ("chord", "Chord")]
RUNNING = "running"
STATES = [
    (task_record.WAITING, "Waiting"),
    (RUNNING, "Running"),
    (task_record.DONE, "Done"),
    (task_record.FAILED, "Failed"),
    (task_record.CANCELLED, "Cancelled"),
]


class CeleryWorkflow(models.Model):
    _name = "celery.workflow"
    _description = "Celery Workflow"
    _order = "id desc"

    uuid = fields.Char("Workflow ID", readonly=True, copy=False)
    name = fields.Char(readonly=True)
    kind = fields.Selection(KINDS, readonly=True)
    parent_id = fields.Many2one("celery.workflow", "Part of", readonly=True, ondelete="cascade", index=True)
    root_id = fields.Many2one(
        "celery.workflow", "Workflow", readonly=True, ondelete="cascade", index=True, help="Empty on a workflow's root."
    )
    child_ids = fields.One2many("celery.workflow", "parent_id", "Parts", readonly=True)
    task_ids = fields.One2many("celery.task", "workflow_id", "Steps", readonly=True)
    user_id = fields.Many2one("res.users", "User", readonly=True, index=True, ondelete="set null")
    task_count = fields.Integer("Step Count", compute="_compute_progress")
    done_count = fields.Integer("Done", compute="_compute_progress")
    failed_count = fields.Integer("Failed", compute="_compute_progress")
    progress_percent = fields.Float("Progress", compute="_compute_progress", digits=(16, 1))
    progress_label = fields.Char("Done Steps", compute="_compute_progress")
    state = fields.Selection(STATES, compute="_compute_progress")

    @api.model_create_multi
    def create(self, vals_list):
        raise AccessError(_("Celery workflows are created by delay() on a chain, group or chord, not by create()."))

    def write(self, vals):
        raise AccessError(_("Celery workflows cannot be changed; cancel them instead."))

    def _subtree_tasks(self):
        """Each workflow's task records, those of its parts included: {workflow id: celery.task}."""
        roots = self.mapped(lambda node: node.root_id or node)
        nodes = self.search([("id", "in", roots.ids)]) | self.search([("root_id", "in", roots.ids)])
        children = {}
        for node in nodes:
            children.setdefault(node.parent_id.id, []).append(node.id)
        tasks = self.env["celery.task"].search_fetch([("workflow_root_id", "in", roots.ids)], ["workflow_id", "state"])
        by_node = {}
        for task in tasks:
            by_node.setdefault(task.workflow_id.id, self.env["celery.task"])
            by_node[task.workflow_id.id] |= task
        found = {}
        for node in self:
            pending, subtree = [node.id], self.env["celery.task"]
            while pending:
                current = pending.pop()
                subtree |= by_node.get(current, self.env["celery.task"])
                pending.extend(children.get(current, []))
            found[node.id] = subtree
        return found

    @api.depends("task_ids.state")
    def _compute_progress(self):
        subtrees = self._subtree_tasks()
        for node in self:
            states = subtrees[node.id].mapped("state")
            done, failed = states.count(task_record.DONE), states.count(task_record.FAILED)
            node.task_count, node.done_count, node.failed_count = len(states), done, failed
            node.progress_percent = 100.0 * done / len(states) if states else 0.0
            node.progress_label = _("%(done)s of %(total)s done", done=done, total=len(states))
            node.state = _workflow_state(states)

    def action_cancel(self):
        """Cancel every step that has not finished: waiting ones never run, a running one is revoked."""
        for node in self:
            unfinished = self._subtree_tasks()[node.id].filtered(
                lambda task: task.state in task_record.CANCELLABLE_STATES
            )
            unfinished.action_cancel()
        return True

    def action_open_tasks(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": self.name,
            "res_model": "celery.task",
            "views": [(False, "list"), (False, "form")],
            "domain": [("id", "in", self._subtree_tasks()[self.id].ids)],
        }


def _workflow_state(states):
    if not states or all(state == task_record.CANCELLED for state in states):
        return task_record.CANCELLED
    if task_record.FAILED in states:
        return task_record.FAILED
    if all(state in (task_record.DONE, task_record.CANCELLED) for state in states):
        return task_record.DONE
    if any(state in (task_record.STARTED, task_record.RETRY, task_record.DONE) for state in states):
        return RUNNING
    return task_record.WAITING

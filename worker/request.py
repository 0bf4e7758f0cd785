"""The worker's request class: a task killed by its hard time limit is recorded as failed.

It runs in the worker's main process, which sees the pool child die; the failure is written by its
background thread, so the event loop never waits on PostgreSQL.
"""

from celery.exceptions import TimeLimitExceeded
from celery.worker.request import Request

from .. import task_record
from ..exceptions import MalformedMessage
from . import live, outcome
from .background import background


class OdooRequest(Request):
    """Also tells the live updates which databases have news (in the main process, where rounds run)."""

    def on_accepted(self, pid, time_accepted):
        """A pool process took the task: its database's web clients have news (the live round follows)."""
        super().on_accepted(pid, time_accepted)
        args = self.args
        if isinstance(args, (list, tuple)) and args and isinstance(args[0], str):
            live.touch(args[0])

    def on_timeout(self, soft, timeout):
        super().on_timeout(soft, timeout)
        if soft:
            return
        try:
            dbname, record_id = task_record.message_target(self.args, self.kwargs)
        except MalformedMessage:
            return  # the pool rejected it before it could run: there is no record to update
        error = TimeLimitExceeded(f"{self.name} killed after its time_limit of {timeout}s; rolled back")
        background.submit(lambda: outcome.record_failure_outside_task(dbname, record_id, error))
        live.touch(dbname)

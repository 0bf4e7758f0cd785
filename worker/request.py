"""The worker's request class: a task killed by its hard time limit is recorded as failed.

It runs in the worker's main process, which sees the pool child die.
"""

from celery.exceptions import TimeLimitExceeded
from celery.worker.request import Request

from .. import task_record
from ..exceptions import MalformedMessage
from . import outcome


class OdooRequest(Request):
    def on_timeout(self, soft, timeout):
        super().on_timeout(soft, timeout)
        if soft:
            return
        try:
            dbname, record_id = task_record.message_target(self.args, self.kwargs)
        except MalformedMessage:
            return  # the pool rejected it before it could run: there is no record to update
        error = TimeLimitExceeded(f"{self.name} killed after its time_limit of {timeout}s; rolled back")
        outcome.record_failure_outside_task(dbname, record_id, error)

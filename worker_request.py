"""The worker's request class: a task killed by its hard time limit is recorded as failed."""

from celery.exceptions import TimeLimitExceeded
from celery.worker.request import Request

from . import runner


class OdooRequest(Request):
    def on_timeout(self, soft, timeout):
        super().on_timeout(soft, timeout)
        if soft:
            return
        args = self.args
        if isinstance(args, (list, tuple)) and len(args) == 2 and isinstance(args[1], int):
            error = TimeLimitExceeded(f"{self.name} killed after its time_limit of {timeout}s; rolled back")
            runner.record_outcome_outside_task(args[0], args[1], error)

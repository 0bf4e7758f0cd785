"""The decorator: ``@celeryTask(model=..., name=...)`` turns an ORM method into a Celery task.

With ``enable_celery_task`` on, calling the method writes a task record in the caller's
transaction and returns an ``AsyncResult``; the message is published once that transaction
commits. With it off, or with ``celery_task_inline`` in the context, the method runs inline.
"""

import functools
import logging

from . import config, outbox, task_specs
from .app import register_task
from .exceptions import RetryableError

_logger = logging.getLogger(__name__)

INLINE_CONTEXT_KEY = "celery_task_inline"
TASK_CONTEXT_KEY = "celeryTask"


class InlineTask:
    """Stands in for the Celery task when a decorated method runs inline, so progress calls work."""

    def __init__(self, spec):
        self.name = spec.task_name

    def update_state(self, task_id=None, state=None, meta=None, **kwargs):
        _logger.debug("%s (inline) %s %s", self.name, state, meta)


def celeryTask(
    *,
    model,
    name=None,
    queue=None,
    dbname=None,
    countdown=None,
    eta=None,
    expires=None,
    priority=None,
    max_retries=0,
    retry_for=(),
    retry_backoff=1.0,
    time_limit=None,
    soft_time_limit=None,
    sudo=False,
    unique=False,
    unique_running=False,
    concurrency=None,
    limit=None,
    rate_limit=None,
):
    """Offload the decorated model method to Celery as task ``<model>.<name>``.

    ``unique``: True or ``key(records, *args, **kwargs) -> str``: a call while an equal task is
    still waiting to run (or, with ``unique_running``, running) returns that task instead.
    ``concurrency``: at most this many run at once across every worker; ``limit``: the name of a
    limit several tasks share. ``rate_limit``: Celery's, per worker (``"10/m"``).
    """
    options = dict(locals())
    task_specs.check_options(options)

    def decorate(func):
        spec = task_specs.TaskSpec(
            **{**options, "name": name or func.__name__, "retry_for": tuple(retry_for)},
            method=func.__name__,
            func=func,
        )
        task_specs.add(spec)
        register_task(spec)

        @functools.wraps(func)
        def wrapper(self, *args, **kwargs):
            if task_specs.take_inline(spec):
                return func(self, *args, **kwargs)
            if self.env.context.get(INLINE_CONTEXT_KEY) or not config.async_enabled():
                if TASK_CONTEXT_KEY not in self.env.context:
                    self = self.with_context(**{TASK_CONTEXT_KEY: InlineTask(spec)})
                return func(self, *args, **kwargs)
            return outbox.enqueue(spec, self, args, kwargs)

        wrapper._celery_task_spec = spec
        return wrapper

    return decorate


celery_task = celeryTask

__all__ = ["RetryableError", "celeryTask", "celery_task"]

"""The decorator: ``@celeryTask(model=..., name=...)`` turns an ORM method into a Celery task.

With ``enable_celery_task`` on, calling the method writes a task record in the caller's
transaction and returns an ``AsyncResult``; the message is published once that transaction
commits. With it off, or with ``celery_task_inline`` in the context, the method runs inline.

One call can set its own options over the decorator's, in queue_job's spelling
(``records.with_delay(eta=..., priority=...).method(*args)``) or Celery's
(``signature(records.method, *args).set(...)`` / ``.apply_async(...)``, see canvas.py).
"""

import contextlib
import contextvars
import functools
import logging

from . import config, outbox, task_specs
from .app import register_task
from .exceptions import RetryableError

_logger = logging.getLogger(__name__)

INLINE_CONTEXT_KEY = "celery_task_inline"
TASK_CONTEXT_KEY = "celeryTask"

_next_call_options = contextvars.ContextVar("celery_task_next_call_options", default=None)
_trap = contextvars.ContextVar("celery_task_trap", default=None)


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
    limit several tasks share. ``rate_limit``: Celery's, per worker (``"10/m"``). ``priority``: 0
    runs first, 9 last.
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
            return run_call(spec, self, args, kwargs, _take_call_options(spec))

        wrapper._celery_task_spec = spec
        return wrapper

    return decorate


def run_call(spec, records, args, kwargs, options=task_specs.NO_OPTIONS):
    """A decorated call: kept by a test's trap, run inline, or written to the outbox with ``options``."""
    trap = _trap.get()
    if trap is not None:
        return trap.keep(spec, records, args, kwargs, options)
    if records.env.context.get(INLINE_CONTEXT_KEY) or not config.async_enabled():
        return run_inline(spec, records, args, kwargs)
    return outbox.enqueue(spec, records, args, kwargs, options)


def run_inline(spec, records, args, kwargs):
    """The method itself, in the caller's transaction: what async off does, whatever the call's options."""
    if TASK_CONTEXT_KEY not in records.env.context:
        records = records.with_context(**{TASK_CONTEXT_KEY: InlineTask(spec)})
    return spec.func(records, *args, **kwargs)


def call_with_options(records, spec, args, kwargs, options):
    """``records.<spec's method>(*args, **kwargs)``, that one call with ``options``.

    Through the method as the records' model has it, overrides included: the decorator's wrapper
    takes the options when the call reaches it.
    """
    token = _next_call_options.set((spec.task_name, options))
    try:
        return getattr(records, spec.method)(*args, **kwargs)
    finally:
        _next_call_options.reset(token)


def _take_call_options(spec):
    pending = _next_call_options.get()
    if pending is None or pending[0] != spec.task_name:
        return task_specs.NO_OPTIONS
    _next_call_options.set(None)  # the first call of this task inside takes them, not a later one
    return pending[1]


class Delayed:
    """``records.with_delay(**options)`` (queue_job's spelling): a decorated method called on it runs with them."""

    def __init__(self, records, options):
        self._records = records
        self._options = task_specs.call_options(f"{records._name}.with_delay()", options)

    def __getattr__(self, name):
        spec = task_specs.spec_of(self._records, name)
        if spec is None:
            raise TypeError(
                f"{self._records._name}.with_delay().{name}: with_delay() calls a method decorated with "
                f"@celeryTask, and {name} is not one; nothing was written"
            )
        return functools.partial(_delayed_call, self._records, spec, self._options)

    def __repr__(self):
        return f"{self._records!r}.with_delay()"


def _delayed_call(records, spec, options, *args, **kwargs):
    return call_with_options(records, spec, args, kwargs, options)


@contextlib.contextmanager
def trapping(trap):
    """Inside: every decorated call (and workflow) goes to ``trap.keep(...)`` instead (tests/common.py)."""
    token = _trap.set(trap)
    try:
        yield trap
    finally:
        _trap.reset(token)


def trap_of_this_call():
    """The trap calls go to now, or None."""
    return _trap.get()


celery_task = celeryTask

__all__ = ["RetryableError", "celeryTask", "celery_task"]

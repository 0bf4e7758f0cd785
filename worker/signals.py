"""The Celery signal handlers a worker needs: fork safety, clean exit, unknown task names, and tracing."""

import logging

from celery import signals

from .. import compat, task_record, tracing
from ..exceptions import MalformedMessage, UnknownTask
from . import connections, live, metrics, outcome
from .background import background

_logger = logging.getLogger(__name__)

_inherited_pools = []


def forget_inherited_connections(**kwargs):
    """A forked child must never use, nor close, a connection of its parent."""
    for pool in compat.abandon_inherited_pools():
        _logger.warning(
            "celery_task: %d database connection(s) crossed a fork; abandoning them", len(pool._connections)
        )
        _inherited_pools.append(pool)


def close_kept_connections(**kwargs):
    """The connections a process kept between tasks are closed, not leaked, when it stops."""
    connections.close_all()


def stop_background(**kwargs):
    """The main process's background thread ends first: its elections go to another worker at once."""
    background.stop()
    connections.close_all()


def record_unknown_task(message=None, name=None, id=None, **kwargs):
    """A message names a task no decorator registered: say so on its record, when it names one."""
    error = UnknownTask(f"no decorated method is registered as {name!r} on this worker; nothing ran")
    try:
        body = message.decode()
        args, kwargs = (body[0], body[1]) if isinstance(body, (list, tuple)) else (body["args"], body["kwargs"])
    except Exception as exc:  # noqa: BLE001 - an unreadable body names no record to update
        _logger.error("celery_task: %s[%s]: %s; unreadable body (%s), no task record to update", name, id, error, exc)
        return
    try:
        dbname, record_id = task_record.message_target(args, kwargs)
    except MalformedMessage as exc:
        _logger.error("celery_task: %s[%s]: %s; %s: no task record to update", name, id, error, exc)
        return
    _logger.error("celery_task: %s[%s]: %s", name, id, error)
    metrics.REJECTED.labels("unknown_task").inc()
    background.submit(lambda: outcome.record_failure_outside_task(dbname, record_id, error))
    live.touch(dbname)


def connect():
    """Connect the handlers (strong references: they live as long as the worker)."""
    signals.worker_process_init.connect(forget_inherited_connections, weak=False)
    signals.worker_process_shutdown.connect(close_kept_connections, weak=False)
    signals.worker_shutdown.connect(stop_background, weak=False)
    signals.task_unknown.connect(record_unknown_task, weak=False)
    tracing.instrument_worker()

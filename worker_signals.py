"""Celery signal handlers a worker process needs: fork safety, clean exit and unknown task names."""

import logging

from celery import signals

from odoo import sql_db

from . import runner, task_connections
from .exceptions import UnknownTask

_logger = logging.getLogger(__name__)

_inherited_pools = []


@signals.worker_process_init.connect(weak=False)
def forget_inherited_connections(**kwargs):
    """A forked child must never use, nor close, a connection of its parent."""
    pool = sql_db._Pool
    if pool is not None and pool._connections:
        _logger.warning(
            "celery_task: %d database connection(s) crossed a fork; abandoning them", len(pool._connections)
        )
        _inherited_pools.append(pool)
        sql_db._Pool = None


@signals.worker_process_shutdown.connect(weak=False)
@signals.worker_shutdown.connect(weak=False)
def close_kept_connections(**kwargs):
    """The connections a process kept between tasks are closed, not leaked, when it stops."""
    task_connections.close_all()


@signals.task_unknown.connect(weak=False)
def record_unknown_task(message=None, name=None, id=None, **kwargs):
    """A message names a task no decorator registered: say so on its record."""
    try:
        body = message.decode()
        args = body[0] if isinstance(body, (list, tuple)) else body.get("args")
    except Exception:  # noqa: BLE001 - a body we cannot read has no record to update
        args = None
    if isinstance(args, (list, tuple)) and len(args) == 2 and isinstance(args[1], int):
        error = UnknownTask(f"no decorated method is registered as {name!r} on this worker; nothing ran")
        _logger.error("celery_task: %s[%s]: %s", name, id, error)
        runner.record_outcome_outside_task(args[0], args[1], error)

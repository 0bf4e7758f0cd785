"""Record what became of a task: its outcome, its live progress, and its owner's notification.

A done task's state commits in the task's own transaction, with its effects; any other outcome is
written after that transaction was rolled back, in a new one. The owner's notification is queued
in the transaction that records the outcome: it goes out when that commits and never announces
an outcome that was rolled back. It runs in a savepoint taken outside the error handling, so a
failure to notify never changes the outcome, and an error of the outcome's own transaction is
never mistaken for one of the notification.
"""

import contextlib
import contextvars
import json
import logging
import traceback

import psycopg2

from odoo import api

from .. import databases, serialization, task_record
from . import connections, prepared_statements, retries, workflow

_logger = logging.getLogger(__name__)

_progress_target = contextvars.ContextVar("celery_task_progress_target", default=None)


def outcome_values(record_id, state, result=None, exc=None):
    """The parameters of the statements that finish a task."""
    return {
        "id": record_id,
        "state": state,
        "result": result,
        "exc_type": f"{type(exc).__module__}.{type(exc).__qualname__}" if exc else None,
        "exc_message": str(exc) if exc else None,
        "traceback": "".join(traceback.format_exception(exc)) if exc else None,
    }


def finish_done(cr, record_id, result, notify):
    """Mark the task done in its own transaction ``cr``; False when it was cancelled after its claim."""
    values = outcome_values(record_id, task_record.DONE, result=result)
    prepared_statements.execute(cr, cr, task_record.FINISH_STARTED, values)
    if not cr.rowcount:
        return False
    if notify:
        notify_outcome(cr, record_id)
    return True


def record_outcome(registry, record_id, state, result=None, exc=None, countdown=0):
    """Write a final (or retry) state from a fresh transaction, after the method's was rolled back."""
    values = {**outcome_values(record_id, state, result=result, exc=exc), "countdown": countdown}

    def write():
        lock_connection = connections.lock_connection(registry.db_name)
        with workflow.release_locks(lock_connection) as locks, registry.cursor() as cr:
            cr.execute(task_record.RETRY_TASK if state == task_record.RETRY else task_record.FINISH_TASK, values)
            if state == task_record.FAILED:
                workflow.stop_downstream(cr, record_id, "failed")
            elif state == task_record.DONE:  # run in another database: its effects committed there
                workflow.release_successors(cr, record_id, locks)
            if state != task_record.RETRY:
                notify_outcome(cr, record_id)

    retries.with_transient_retries(f"record {state} of task {record_id}", write)


def record_failure_outside_task(dbname, record_id, exc, task_uuid=None):
    """Mark a task failed on a short-lived connection.

    Used from the worker's main process (hard time limit, unknown task name), and for a database
    the worker does not serve, where only the record whose uuid the message names is touched.
    """
    values = outcome_values(record_id, task_record.FAILED, exc=exc)
    query = task_record.FAIL_UNFINISHED
    if task_uuid is not None:
        query = task_record.FAIL_UNFINISHED_UUID
        values["uuid"] = task_uuid
    elif not databases.is_served(dbname):
        return
    try:
        with connections.main_process_cursor(dbname) as cr:
            cr.execute(query, values)
            if cr.rowcount:
                workflow.stop_downstream(cr, record_id, "failed")
    except psycopg2.Error as error:
        _logger.warning("celery_task: could not record the failure of task %s in %s: %s", record_id, dbname, error)


@contextlib.contextmanager
def progress_on(connection, record_id):
    """While the task runs, its ``update_state`` calls are written to its progress row on ``connection``."""
    token = _progress_target.set((connection, record_id))
    try:
        yield
    finally:
        _progress_target.reset(token)


def record_progress(state, meta):
    """Mirror ``update_state`` into the task's progress row, visible while the task still runs."""
    target = _progress_target.get()
    if target is None:
        return
    connection, record_id = target
    meta = meta if isinstance(meta, dict) else {}
    values = {
        "id": record_id,
        "state": state,
        "current": meta.get("current"),
        "total": meta.get("total"),
        "message": meta.get("message") or meta.get("status"),
        "meta": json.dumps(serialization.safe_context(meta)),
    }
    try:
        with connection.cursor() as cr:
            cr.execute(task_record.UPSERT_PROGRESS, values)
    except Exception:
        _logger.warning("celery_task: could not record progress of task %s", record_id, exc_info=True)


def notify_outcome(cr, record_id):
    """Queue the notification of task record ``record_id``'s outcome in ``cr``'s transaction; never raises."""
    savepoint = cr.savepoint()  # flushes pending writes: their errors belong to the caller
    try:
        with savepoint:
            env = api.Environment(cr, api.SUPERUSER_ID, {})
            task = env["celery.task"].browse(record_id).exists()
            return bool(task) and task._notify_owner()
    except Exception:
        _logger.warning("celery_task: could not notify the outcome of task %s", record_id, exc_info=True)
        return False

"""Record what became of a task: its outcome and its live progress.

A done task's state commits in the task's own transaction, with its effects; any other outcome is
written after that transaction was rolled back, in a new one. Done and failed outcomes are marked
for a notice to their owner (``notice_pending``), in the same statement: the main process tells
them (worker/live.py), so no outcome that was rolled back is ever announced.
"""

import contextlib
import contextvars
import json
import logging
import traceback

import psycopg2

from .. import databases, serialization, task_record
from . import connections, prepared_statements, retries, workflow

_logger = logging.getLogger(__name__)

_progress_target = contextvars.ContextVar("celery_task_progress_target", default=None)


def outcome_values(record_id, state, result=None, exc=None, claim=None):
    """The parameters of the statements that finish a task; ``claim``: its claimed row, whose fence they check."""
    return {
        "id": record_id,
        "uuid": claim and claim["uuid"],
        "attempts": claim and claim["attempts"],
        "state": state,
        "notice": state in (task_record.DONE, task_record.FAILED),  # what the owner is told of
        "result": result,
        "exc_type": f"{type(exc).__module__}.{type(exc).__qualname__}" if exc else None,
        "exc_message": str(exc) if exc else None,
        "traceback": "".join(traceback.format_exception(exc)) if exc else None,
    }


def finish_done(cr, claim, result):
    """Mark the ``claim``ed task done in its own transaction ``cr``: the waiting steps after it, None when
    it is no longer this claim's (see :func:`no_longer_ours`)."""
    values = outcome_values(claim["id"], task_record.DONE, result=result, claim=claim)
    prepared_statements.execute(cr, cr, task_record.FINISH_STARTED, values)
    row = cr.fetchone()
    return None if row is None else row[0] or []


def no_longer_ours(connection, claim):
    """Why the ``claim``ed task's finish updated nothing: cancelled, or claimed again by another worker."""
    with connection.cursor() as cr:
        cr.execute(task_record.TASK_HOLDER, {"id": claim["id"]})
        row = cr.fetchone()
    if row is None or row[0] == task_record.CANCELLED:
        return "was cancelled while it ran"
    state, attempts, host = row
    return (
        f"is no longer this worker's claim (attempt {claim['attempts']}): the server ended its session meanwhile and "
        f"the task is now {state}, attempt {attempts} on {host}"
    )


def record_outcome(registry, claim, state, result=None, exc=None, countdown=0, published=True):
    """Write a final (or retry) state of the ``claim``ed task from a fresh transaction, after the method's
    was rolled back; nothing when the task is no longer this claim's. Returns whether it was written.

    A retry ``published`` by the worker now waits on the broker until its eta; otherwise it waits here,
    unsent, for the publisher of due tasks (worker/scheduler.py).
    """
    record_id = claim["id"]
    values = outcome_values(record_id, state, result=result, exc=exc, claim=claim)
    values.update(countdown=countdown, published=published)

    def write():
        lock_connection = connections.lock_connection(registry.db_name)
        with registry.cursor() as cr:
            cr.execute(task_record.RETRY_TASK if state == task_record.RETRY else task_record.FINISH_TASK, values)
            if not cr.rowcount:
                _logger.warning(
                    "celery_task: task record %s %s; its outcome (%s) is not recorded",
                    record_id,
                    no_longer_ours(lock_connection, claim),
                    state,
                )
                return False
            if state == task_record.FAILED:
                workflow.stop_downstream(cr, record_id, task_record.FAILED)
            elif state == task_record.DONE:  # run in another database: its effects committed there
                row = cr.fetchone()
                if row and row[0]:
                    workflow.release_successors(cr, record_id, row[0], lock_connection)
            return True

    return retries.with_transient_retries(f"record {state} of task {record_id}", write)


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
                workflow.stop_downstream(cr, record_id, task_record.FAILED)
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

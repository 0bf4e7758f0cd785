"""Claim a task record under its advisory lock, and read what its start needs in the same statement.

Besides the claimed row, the worker needs the registry's signaling sequences (did another process
change the models or caches?), whether the task's user is still active, which of its records
still exist, and the timestamp Odoo's ``cr.now()`` asks for before the first write. Asked one by
one, that is four more round trips on every task; the claim returns them with the row.
"""

import contextlib
import dataclasses
import functools
import logging

import psycopg2.extras
from celery.exceptions import Reject

from odoo.modules.registry import Registry

from .. import compat, databases, task_record
from ..exceptions import MalformedMessage, UnknownTask, UnservedDatabase
from . import connections, limits, metrics, outcome, prepared_statements, retries

_logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TaskStart:
    """What the claim read for the task's transaction."""

    registry: Registry
    user_active: bool | None  # None: the user is gone
    existing_ids: frozenset | None  # None: not read by the claim, the ORM must check


@contextlib.contextmanager
def claimed(registry, task, spec, record_id):
    """Lock and claim the record, and a slot of its limit; yields its row, or None when there is nothing to run.

    The lock is held until the outcome is recorded: released at once when the task did not end
    done (a retry or a requeue may publish it again right away), else by this process's next claim.
    The slot is freed and handed on as soon as the outcome is recorded.
    """
    dbname = registry.db_name
    row = retries.with_transient_retries(task.name, lambda: _lock_and_claim(registry, task, spec.model, record_id))
    if row is None:
        yield None
        return
    connection = connections.lock_connection(dbname)
    slot = limits.take_slot(connection, spec, record_id) if spec.limit_name else None
    if spec.limit_name and slot is None:
        unlock(dbname, record_id)
        yield None
        return
    try:
        with outcome.progress_on(connection, record_id):
            try:
                yield row
            except BaseException:
                unlock(dbname, record_id)
                raise
            # Done, and nothing publishes a done task again: the lock can wait for this process's next claim.
            connections.release_with_next_claim(dbname, record_id)
    finally:
        if slot is not None:
            limits.give_back(connection, spec, slot, dbname)


def _lock_and_claim(registry, task, model_name, record_id):
    dbname = registry.db_name
    values = {
        "lock_class": task_record.LOCK_CLASS,
        "id": record_id,
        "model": model_name,
        "uuid": task.request.id,
        "name": task.name,
        "host": task.request.hostname,
        "release": connections.take_release(dbname),
    }
    try:
        connection = connections.lock_connection(dbname)
        with connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cr:
            prepared_statements.execute(connection, cr, _claim_statement(registry, model_name), values)
            row = cr.fetchone()
    except psycopg2.OperationalError:
        connections.forget_lock_connection(dbname)  # whatever the statement locked is released
        _refuse_if_dropped(task, dbname)
        raise
    except BaseException:
        connections.forget_lock_connection(dbname)
        raise
    if not row["locked"]:
        metrics.DUPLICATES.labels(task.name).inc()
        _logger.info(
            "%s[%s] is locked by another worker, which runs it or has just run it; duplicate skipped",
            task.name,
            task.request.id,
        )
        return None
    if row["id"] is not None:
        return row
    if row["queue_paused"] and row["found_state"] in (task_record.PENDING, task_record.RETRY):
        _put_back_paused(task, connection, record_id)
    unlock(dbname, record_id)
    return None if row["queue_paused"] else _not_claimed(task, dbname, record_id, row)


def _put_back_paused(task, connection, record_id):
    """A message of a paused queue: its task waits again, unsent and unrun, until the queue resumes."""
    with connection.cursor() as cr:
        cr.execute(task_record.PUT_BACK_PAUSED, {"id": record_id})
    _logger.info(
        "%s[%s]: its queue is paused; the task waits, unrun, until the queue resumes", task.name, task.request.id
    )


def _refuse_if_dropped(task, dbname):
    """A connection refused because the database was dropped: say so, instead of retrying."""
    if databases.exists(dbname):
        return
    databases.forget(dbname)
    compat.forget_registry(dbname)
    error = UnservedDatabase(
        f"{task.name}[{task.request.id}]: database {dbname!r} no longer exists on this server; nothing ran"
    )
    _logger.error("%s", error)
    raise Reject(error, requeue=False)


def _not_claimed(task, dbname, record_id, row):
    """None for a record already finished; a rejection for one that does not exist or does not match."""
    if row["found_uuid"] is None:
        metrics.REJECTED.labels("unknown_record").inc()
        error = UnknownTask(
            f"{task.name}[{task.request.id}]: no task record {record_id} in database {dbname}; "
            "message rejected, nothing ran"
        )
    elif (row["found_uuid"], row["found_name"]) != (task.request.id, task.name):
        metrics.REJECTED.labels("forged").inc()
        error = MalformedMessage(
            f"{task.name}[{task.request.id}] does not match task record {record_id} "
            f"({row['found_name']}[{row['found_uuid']}]); message rejected, nothing ran"
        )
    else:
        metrics.DUPLICATES.labels(task.name).inc()
        _logger.info(
            "%s[%s] is already %s; message acknowledged and skipped", task.name, task.request.id, row["found_state"]
        )
        return None
    _logger.error("%s", error)
    raise Reject(error, requeue=False)


def unlock(dbname, record_id):
    """Release the task's lock now; a connection that fails to is closed, which releases it too."""
    try:
        with connections.lock_connection(dbname).cursor() as cr:
            cr.execute(task_record.UNLOCK, {"lock_class": task_record.LOCK_CLASS, "id": record_id})
    except psycopg2.Error:
        connections.forget_lock_connection(dbname)


def begin(cr, registry, row):
    """The task's start, from its claimed ``row``: ``registry`` brought up to date, ``cr.now()`` answered."""
    registry = compat.up_to_date_registry(registry, cr, row)
    compat.set_transaction_now(cr, row["start_now"])
    existing_ids = row["existing_ids"]
    return TaskStart(registry, row["user_active"], None if existing_ids is None else frozenset(existing_ids))


def _claim_statement(registry, model_name):
    return _claim_statement_for_table(_stored_table(registry, model_name))


def _stored_table(registry, model_name):
    """The model's own table, or None when the ORM must check (unknown, abstract or SQL-view model)."""
    model = registry.models.get(model_name)
    if model is None or model._abstract or model._table_query:
        return None
    return model._table


@functools.cache
def _claim_statement_for_table(table):
    """Built once per table: the claim runs on every task."""
    quoted = '"{}"'.format(table.replace('"', '""')) if table else None
    existing = task_record.EXISTING_IDS.format(table=quoted) if table else "NULL"
    return task_record.LOCK_AND_CLAIM.format(existing_ids=existing, signaling=compat.signaling_sql()[0])

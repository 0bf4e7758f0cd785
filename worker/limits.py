"""Concurrency limits that hold across every worker and host: at most N tasks of a limit run at once.

A limit has N slots, each a session advisory lock taken on the pool process's lock connection
while the task's method runs: a worker that dies frees its slots with its connection. A claimed
task that finds no free slot does not keep its pool process: it is deferred (back in the database,
unpublished) and acknowledged. A task that frees a slot hands it on: it publishes the oldest
deferred tasks of its limit, as many as the limit has room for. Taking a slot when none was free
and handing one on take turns on the limit's gate lock, so a task is never deferred right after
the last slot was handed on with nobody left to hand it to; the relay publishes deferred tasks
whose hand-off was lost with a worker.

A limit's size: its ``celery.task.limit`` record (read at every claim, so an edit applies at
once), else ``celery_task_limits`` in the config (``{"geocoding": 2}``), else the decorator's
``concurrency``, else 1.
"""

import logging

import psycopg2.extras

from .. import app, task_record

_logger = logging.getLogger(__name__)


def take_slot(connection, spec, record_id):
    """A free slot of ``spec``'s limit, taken for ``record_id``; None when it was deferred instead."""
    values = {"limit": spec.limit_name, "size": spec.default_limit_size, "id": record_id}
    with connection.cursor() as cr:
        cr.execute(task_record.TAKE_SLOT, values)
        row = cr.fetchone()
        if row is not None:
            return row[0]
        cr.execute(task_record.LOCK_GATE, values)
        try:
            cr.execute(task_record.TAKE_SLOT, values)  # one may have been freed before the gate
            row = cr.fetchone()
            if row is not None:
                return row[0]
            cr.execute(task_record.DEFER_TASK, values)
        finally:
            cr.execute(task_record.UNLOCK_GATE, values)
    _logger.info(
        "%s: limit %s is full; task record %s deferred until a slot is free", spec.task_name, spec.limit_name, record_id
    )
    return None


def give_back(connection, spec, slot, dbname):
    """Free ``slot`` and hand it on to the deferred tasks of the limit, published from here.

    Never raises: a connection that fails is closed, which frees the slot, and the relay hands on.
    """
    values = {"limit": spec.limit_name, "size": spec.default_limit_size, "slot": slot}
    try:
        with connection.cursor() as cr:
            cr.execute(task_record.RELEASE_SLOT, values)
        hand_off(connection, spec.limit_name, values["size"], dbname)
    except psycopg2.Error:
        _logger.warning("%s: could not hand on a slot of limit %s; the relay will", spec.task_name, spec.limit_name)
        connection.close()


def hand_off(connection, limit, size, dbname):
    """Publish the deferred tasks of ``limit`` it has room for; returns how many. Also the relay's."""
    values = {"limit": limit, "size": size}
    with connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cr:
        cr.execute(task_record.LOCK_GATE, values)
        try:
            cr.execute(task_record.HAND_OFF, values)
            rows = cr.fetchall()
        finally:
            cr.execute(task_record.UNLOCK_GATE, values)
        messages = [task_record.TaskMessage.from_row(dbname, row) for row in rows]
        sent = [message.record_id for message in app.publish_all(messages)]
        if sent:
            cr.execute(task_record.MARK_SENT, {"ids": sent})
    return len(rows)

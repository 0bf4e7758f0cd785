"""Workflows in the worker: release a waiting step when what it waits for is done; stop it when that failed.

A step waits for one step (a chain) or several (after a group, a chord's callback). It is released
in the task transaction that commits the last of them, with that one's effects and ``done`` state,
so a release is never lost nor repeated:

- one predecessor: the finishing step releases it; no other transaction touches it.
- several: the members finishing at the same time serialize on a transaction advisory lock of
  the waiting step, taken in their task transaction, which PostgreSQL frees only once that
  transaction's commit (or rollback) is visible. Holding it, a member looks, on the pool process's
  lock connection in read committed (a snapshot newer than its own transaction's), for another
  predecessor not yet done: when there is none, it is the last, and it releases the step. Each
  member commits before the next one looks, so the last one always sees all the others done; a
  member that dies before its commit leaves the others' view unchanged.

The released step is published after the commit, from the pool process, and marked sent; a
publish that fails leaves it to the relay.
"""

import logging

import psycopg2

from .. import app, config, task_record

_logger = logging.getLogger(__name__)


def release_successors(cr, record_id, waiting_successors, lock_connection):
    """In the transaction that marks ``record_id`` done: release the waiting steps it was the last to wait on.

    ``waiting_successors`` is what marking it done returned (see task_record.FINISH_STARTED).
    """
    released = []
    for successor_id, shared in waiting_successors:
        if shared and not _last_to_finish(cr, lock_connection, successor_id, record_id):
            continue
        cr.execute(task_record.RELEASE_STEP, {"id": successor_id, "horizon": config.schedule_horizon()})
        released.extend(cr.dictfetchall())
    # A step with an eta beyond the horizon is released as scheduled: published when it falls due.
    messages = [
        task_record.TaskMessage.from_row(cr.dbname, row) for row in released if row["state"] == task_record.PENDING
    ]
    if messages:
        cr.postcommit.add(lambda: publish_released(lock_connection, messages))
    return len(released)


def _last_to_finish(cr, lock_connection, successor_id, finished_id):
    """Lock ``successor_id``'s release for ``cr``'s transaction, then: is ``finished_id`` the last before it?"""
    values = {"lock_class": task_record.RELEASE_LOCK_CLASS, "id": successor_id, "finished": finished_id}
    cr.execute(task_record.LOCK_RELEASE, values)
    with lock_connection.cursor() as look:
        look.execute(task_record.UNFINISHED_PREDECESSOR, values)
        return look.fetchone() is None


def publish_released(connection, messages):
    """After the release committed: publish the released steps and mark those the broker took as sent."""
    sent = [message.record_id for message in app.publish_all(messages)]
    if not sent:
        return
    try:
        with connection.cursor() as cr:
            cr.execute(task_record.MARK_SENT, {"ids": sent})
    except psycopg2.Error:
        _logger.warning("celery_task: could not mark released steps %s as sent; the relay may send them again", sent)


def stop_downstream(cr, record_id, why):
    """Cancel the waiting steps that can never start now that ``record_id`` ``why`` (failed, ...)."""
    cr.execute(task_record.CANCEL_DOWNSTREAM, {"id": record_id, "why": why})
    if cr.rowcount:
        _logger.info("celery_task: task record %s %s: %d waiting step(s) cancelled", record_id, why, cr.rowcount)
    return cr.rowcount

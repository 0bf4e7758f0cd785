"""Publishes again what the broker never got, or lost: the outbox's safety net.

A record still unpublished a few seconds after its commit (broker down, caller died between
commit and publish), a retry whose message was lost, or a started task whose worker died (its
advisory lock is free) is published again. So is a task sent long ago that never started while
its queue on the broker is empty, in two rounds in a row: its message is gone (a broker restarted
without persistence, a purged queue, a message acknowledged by a claim the database refused). One
round is not enough: a message a worker has just taken from its queue is not started yet, and it
is by the next round. Duplicates are harmless:
the worker's claim skips them. It runs in the worker's main process, in its background thread
(worker/background.py), in the worker that leads its role (worker/leadership.py), on the
connection that process keeps for the database.
"""

import contextlib
import datetime
import logging

from .. import app, compat, config, databases, task_record, task_specs
from . import limits, metrics, workflow
from .connections import main_process_cursor

_logger = logging.getLogger(__name__)

BATCH = 500

_lost_last_round = {}  # database -> ids of the tasks found lost in the previous round


def is_running(cr, record_id):
    """True while a live worker holds the task's advisory lock."""
    values = {"lock_class": task_record.LOCK_CLASS, "id": record_id}
    cr.execute(task_record.TRY_LOCK, values)
    if not cr.fetchone()["free"]:
        return True
    cr.execute(task_record.UNLOCK, values)
    return False


def _ago(seconds):
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(seconds=seconds)


def empty_queues(names):
    """The queues of ``names`` that hold no ready message on the broker (one that does not exist holds none)."""
    empty = []
    with app.celery_app.connection_for_read() as connection:
        for name in names:
            channel = connection.channel()
            try:
                count = channel.queue_declare(queue=name, passive=True).message_count
            except connection.channel_errors:
                count = 0
            finally:
                channel.close()
            if not count:
                empty.append(name)
    return empty


def resend_lost(cr, dbname, queues, resend_after):
    """Publish again the tasks sent over ``resend_after`` seconds ago, never started, whose queue was empty
    in this round and the one before."""
    cutoff = _ago(resend_after)
    cr.execute(task_record.UNSTARTED_QUEUES, {"cutoff": cutoff, "queues": list(queues)})
    waiting = {app.broker_queue(row["queue"], dbname): row["queue"] for row in cr.fetchall()}
    lost_queues = [waiting[name] for name in empty_queues(list(waiting))] if waiting else []
    lost_before = _lost_last_round.pop(dbname, set())
    if not lost_queues:
        return 0
    cr.execute(task_record.LOST_TASKS, {"cutoff": cutoff, "limit": BATCH, "queues": lost_queues})
    rows = cr.fetchall()
    lost = [task_record.TaskMessage.from_row(dbname, row) for row in rows if row["id"] in lost_before]
    published = [message.record_id for message in app.publish_all(lost)]
    _lost_last_round[dbname] = {row["id"] for row in rows} - set(published)
    if published:
        cr.execute(task_record.MARK_RESENT, {"ids": published})
        metrics.REPUBLISHED.labels("lost").inc(len(published))
        _logger.warning(
            "celery_task relay: %d task(s) of %s were sent over %ss ago and never started, and their queue "
            "was empty in two rounds in a row: their message was lost; published again: %s",
            len(published),
            dbname,
            resend_after,
            published,
        )
    return len(published)


def relay_database(cr, dbname, queues, delay):
    """Publish the stranded tasks of one database bound for ``queues``; returns how many."""
    cutoff = _ago(delay)
    cr.execute(task_record.EXPIRE_TASKS)
    expired = [row["id"] for row in cr.fetchall()]
    for record_id in expired:
        workflow.stop_downstream(cr, record_id, "expired")
    if expired:
        _logger.warning("celery_task relay: %d task(s) expired before running in %s: %s", len(expired), dbname, expired)
    cr.execute(task_record.STRANDED_TASKS, {"cutoff": cutoff, "limit": BATCH, "queues": list(queues)})
    rows = cr.fetchall()
    stranded = []
    for row in rows:
        if row["state"] == task_record.STARTED and is_running(cr, row["id"]):
            continue
        message = task_record.TaskMessage.from_row(dbname, row)
        if row["state"] != task_record.PENDING:
            message.eta = None
        stranded.append(message)
    published = [message.record_id for message in app.publish_all(stranded)]
    if published:
        cr.execute(task_record.MARK_RESENT, {"ids": published})
        metrics.REPUBLISHED.labels("stranded").inc(len(published))
        _logger.info("celery_task relay: published %d stranded task(s) of %s again", len(published), dbname)
    return len(published)


def hand_off_deferred(cr, dbname, queues, delay):
    """Publish deferred tasks whose limit has room and that waited over ``delay``: their hand-off was lost."""
    cr.execute(task_record.DEFERRED_LIMITS, {"cutoff": _ago(delay), "queues": list(queues)})
    names = [row["limit_name"] for row in cr.fetchall()]
    handed = 0
    for name in names:
        spec = next((spec for spec in task_specs.SPECS.values() if spec.limit_name == name), None)
        size = spec.default_limit_size if spec else 1
        with contextlib.closing(compat.open_autocommit(dbname)) as connection:
            handed += limits.hand_off(connection, name, size, dbname)
    if handed:
        metrics.REPUBLISHED.labels("handoff").inc(handed)
        _logger.info("celery_task relay: %d deferred task(s) of %s published for a free slot", handed, dbname)
    return handed


def relay_round(dbname, queues):
    """One round of the relay in ``dbname`` for the tasks bound for ``queues``, each step committed.

    Only queues this worker consumes: publishing them on its broker is then sure to reach a
    consumer, and a worker on another broker or queue never takes over (and strands) tasks it could
    not run itself (worker/leadership.py: one leader per broker and queues).
    """
    delay = config.addon_option("relay_delay")
    resend_after = config.addon_option("relay_resend_after")
    with main_process_cursor(dbname) as cr:
        for step, seconds in ((relay_database, delay), (resend_lost, resend_after), (hand_off_deferred, delay)):
            step(cr, dbname, queues, seconds)
            cr.connection.commit()


def relay_all(queues):
    """One round over every served database, as a leader of them all (the bench measures it)."""
    for dbname in databases.known():
        try:
            relay_round(dbname, queues)
        except Exception as exc:
            if not databases.forget_if_uninstalled(dbname, exc):
                _logger.exception("celery_task relay failed for %s", dbname)

"""Publishes again what the broker never got, or lost: the outbox's safety net.

A record still unpublished a few seconds after its commit (broker down, caller died between
commit and publish), a retry whose message was lost, or a started task whose worker died (its
advisory lock is free) is published again. So is a task sent long ago that never started while
its queue on the broker is empty: its message is gone (a broker restarted without persistence, a
purged queue, a message acknowledged by a claim the database refused). Duplicates are harmless:
the worker's claim skips them. It runs in the worker's main process, in the event loop's thread,
on short-lived connections.
"""

import datetime
import logging

from celery import bootsteps

from . import config, main_process_db
from .app import celery_app
from .publisher import MARK_SENT, Outgoing, publish
from .runner import LOCK_CLASS

_logger = logging.getLogger(__name__)

BATCH = 500

EXPIRE_TASKS = """
    UPDATE celery_task
       SET state = 'cancelled', done_at = (now() AT TIME ZONE 'UTC'), exc_type = 'expired',
           exc_message = 'the task expired before a worker ran it'
     WHERE done_at IS NULL AND state IN ('pending', 'retry') AND expires_at < (now() AT TIME ZONE 'UTC')
 RETURNING id
"""

STRANDED_TASKS = """
    SELECT id, uuid, name, queue, eta, expires_at, priority, call_repr, state
      FROM celery_task
     WHERE done_at IS NULL
       AND queue = ANY(%(queues)s)
       AND ((state = 'pending' AND sent_at IS NULL AND create_date < %(cutoff)s)
         OR (state = 'retry' AND COALESCE(eta, write_date) < %(cutoff)s)
         OR (state = 'started' AND started_at < %(cutoff)s))
     ORDER BY id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
"""


# Sent, never started, no future ETA: either its message still waits in the queue, or it is lost.
UNSTARTED_QUEUES = """
    SELECT DISTINCT queue FROM celery_task
     WHERE done_at IS NULL AND state = 'pending' AND queue = ANY(%(queues)s)
       AND sent_at < %(cutoff)s AND (eta IS NULL OR eta < %(cutoff)s)
"""

LOST_TASKS = """
    SELECT id, uuid, name, queue, eta, expires_at, priority, call_repr, state
      FROM celery_task
     WHERE done_at IS NULL AND state = 'pending' AND queue = ANY(%(queues)s)
       AND sent_at < %(cutoff)s AND (eta IS NULL OR eta < %(cutoff)s)
     ORDER BY id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
"""

MARK_RESENT = """
    UPDATE celery_task SET sent_at = (now() AT TIME ZONE 'UTC') WHERE id = ANY(%s) AND state = 'pending'
"""


def _is_running(cr, record_id):
    """True while a live worker holds the task's advisory lock."""
    cr.execute("SELECT pg_try_advisory_lock(%s, %s) AS free", [LOCK_CLASS, record_id])
    if not cr.fetchone()["free"]:
        return True
    cr.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_CLASS, record_id])
    return False


def _ago(seconds):
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(seconds=seconds)


def empty_queues(names):
    """The queues of ``names`` that hold no ready message on the broker (one that does not exist holds none)."""
    empty = []
    with celery_app.connection_for_read() as connection:
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


def resend_lost(dbname, queues, resend_after):
    """Publish again the tasks sent over ``resend_after`` seconds ago, never started, whose queue is empty."""
    cutoff = _ago(resend_after)
    with main_process_db.cursor(dbname) as cr:
        cr.execute(UNSTARTED_QUEUES, {"cutoff": cutoff, "queues": list(queues)})
        waiting = [row["queue"] for row in cr.fetchall()]
        lost_queues = empty_queues(waiting) if waiting else []
        if not lost_queues:
            return 0
        cr.execute(LOST_TASKS, {"cutoff": cutoff, "limit": BATCH, "queues": lost_queues})
        rows = cr.fetchall()
        published = [row["id"] for row in rows if publish(Outgoing.from_row(dbname, row))]
        if published:
            cr.execute(MARK_RESENT, [published])
            _logger.warning(
                "celery_task relay: %d task(s) of %s were sent over %ss ago and never started, and their queue "
                "is empty: their message was lost; published again: %s",
                len(published),
                dbname,
                resend_after,
                published,
            )
        return len(published)


def relay_database(dbname, queues, delay):
    """Publish the stranded tasks of one database bound for ``queues``; returns how many."""
    cutoff = _ago(delay)
    with main_process_db.cursor(dbname) as cr:
        cr.execute(EXPIRE_TASKS)
        expired = [row["id"] for row in cr.fetchall()]
        if expired:
            _logger.warning(
                "celery_task relay: %d task(s) expired before running in %s: %s", len(expired), dbname, expired
            )
        cr.execute(STRANDED_TASKS, {"cutoff": cutoff, "limit": BATCH, "queues": list(queues)})
        rows = cr.fetchall()
        published = []
        for row in rows:
            if row["state"] == "started" and _is_running(cr, row["id"]):
                continue
            item = Outgoing.from_row(dbname, row)
            if row["state"] != "pending":
                item.eta = None
            if publish(item):
                published.append(row["id"])
        if published:
            cr.execute(MARK_SENT, [published])
            _logger.info("celery_task relay: published %d stranded task(s) of %s again", len(published), dbname)
        return len(published)


def relay_all(queues):
    """Relay for every served database, only tasks of the queues this worker consumes.

    Publishing them on this worker's broker is then sure to reach a consumer: a worker on another
    broker or queue never takes over (and strands) tasks it could not run itself.
    """
    delay = config.addon_option("relay_delay")
    resend_after = config.addon_option("relay_resend_after")
    for dbname in config.served_databases():
        try:
            relay_database(dbname, queues, delay)
            resend_lost(dbname, queues, resend_after)
        except Exception:
            _logger.exception("celery_task relay failed for %s", dbname)


class OutboxRelay(bootsteps.StartStopStep):
    """Consumer bootstep that runs :func:`relay_all` every ``celery_relay_interval`` seconds.

    A consumer step, not a worker step: the consumer clears its timer when the broker connection
    is lost and starts its steps again once it is back, so the relay resumes after an outage.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer, **kwargs):
        super().__init__(consumer, **kwargs)
        self.tref = None

    def start(self, consumer):
        interval = config.addon_option("relay_interval")
        queues = sorted(queue.name for queue in consumer.task_consumer.queues)
        if interval > 0 and queues:
            self.tref = consumer.timer.call_repeatedly(interval, relay_all, (queues,), priority=10)

    def stop(self, consumer):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop

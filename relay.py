"""Publishes again what the broker never got: the outbox's safety net.

A record still unpublished a few seconds after its commit (broker down, caller died between
commit and publish), a retry whose message was lost, or a started task whose worker died (its
advisory lock is free) is published again. Duplicates are harmless: the worker's claim skips them.
It runs in the worker's main process, in the event loop's thread, on short-lived connections.
"""

import datetime
import logging

from celery import bootsteps

from . import config, main_process_db
from .publisher import MARK_SENT, Outgoing, publish
from .runner import LOCK_CLASS

_logger = logging.getLogger(__name__)

BATCH = 500

EXPIRE_TASKS = """
    UPDATE celery_task
       SET state = 'cancelled', done_at = (now() AT TIME ZONE 'UTC'), exc_type = 'expired',
           exc_message = 'the task expired before a worker ran it'
     WHERE state IN ('pending', 'retry') AND expires_at < (now() AT TIME ZONE 'UTC')
 RETURNING id
"""

STRANDED_TASKS = """
    SELECT id, uuid, name, queue, eta, expires_at, priority, call_repr, state
      FROM celery_task
     WHERE state IN ('pending', 'retry', 'started')
       AND queue = ANY(%(queues)s)
       AND ((state = 'pending' AND sent_at IS NULL AND create_date < %(cutoff)s)
         OR (state = 'retry' AND COALESCE(eta, write_date) < %(cutoff)s)
         OR (state = 'started' AND started_at < %(cutoff)s))
     ORDER BY id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
"""


def _is_running(cr, record_id):
    """True while a live worker holds the task's advisory lock."""
    cr.execute("SELECT pg_try_advisory_lock(%s, %s) AS free", [LOCK_CLASS, record_id])
    if not cr.fetchone()["free"]:
        return True
    cr.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_CLASS, record_id])
    return False


def relay_database(dbname, queues, delay):
    """Publish the stranded tasks of one database bound for ``queues``; returns how many."""
    cutoff = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(seconds=delay)
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
    for dbname in config.served_databases():
        try:
            relay_database(dbname, queues, delay)
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

"""Publishes the scheduled tasks that fell due: until then they wait in PostgreSQL, not on the broker.

A task whose eta is further than ``celery_schedule_horizon`` (60 s) when it is written waits as
``scheduled``: no message, no worker memory, nothing on the broker, so a hundred thousand reminders
for next month cost rows of a table, a cancel touches no broker, and its eta can still change. So
does a retry whose countdown is that long. Every ``celery_schedule_interval`` (1 s) the leader of
each role (worker/leadership.py) makes the due tasks of its queues pending in one transaction and
publishes them once that committed, as a call's are: a leader that dies in between leaves them
pending and unsent, for the relay. A task due within the horizon is published at its commit, and a
worker holds it until its eta (Celery's own eta).
"""

import logging

from .. import app, task_record
from . import metrics
from .connections import main_process_cursor

_logger = logging.getLogger(__name__)

BATCH = 500


def publish_due(dbname, queues):
    """Publish the due scheduled tasks (and unsent retries) of ``dbname`` bound for ``queues``; returns how many."""
    made_ready = 0
    while True:
        with main_process_cursor(dbname) as cr:
            cr.execute(task_record.DUE_TASKS, {"queues": list(queues), "limit": BATCH})
            rows = cr.fetchall()
        if not rows:
            return made_ready
        made_ready += len(rows)
        sent = [message.record_id for message in app.publish_all(_messages(dbname, rows))]
        metrics.DUE_PUBLISHED.inc(len(sent))
        if sent:
            with main_process_cursor(dbname) as cr:
                cr.execute(task_record.MARK_SENT, {"ids": sent})
        _logger.info("celery_task: %d due task(s) of %s published, %d taken", len(rows), dbname, len(sent))
        if len(rows) < BATCH:
            return made_ready


def _messages(dbname, rows):
    """The due tasks' messages, without their eta: it has come, and the worker must not wait for it again."""
    messages = [task_record.TaskMessage.from_row(dbname, row) for row in rows]
    for message in messages:
        message.eta = None
    return messages

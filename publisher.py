"""Publishes committed task records to the broker from a background thread.

A caller's request does not wait on the broker: its post-commit hook only hands the records to
this process's publisher thread, which publishes them at once, in commit order, and marks those
the broker took as sent in batches (one update per database every MARK_DELAY at most). The
records are committed before they get here, so a process that dies with some still queued loses
nothing: the relay publishes them a few seconds later.
"""

import atexit
import collections
import contextlib
import dataclasses
import datetime
import logging
import os
import threading
import time

import psycopg2

from . import task_connections
from .app import celery_app

_logger = logging.getLogger(__name__)

BATCH = 200
MARK_DELAY = 0.05
EXIT_WAIT = 5.0

MARK_SENT = """
    UPDATE celery_task SET sent_at = (now() AT TIME ZONE 'UTC')
    WHERE id = ANY(%s) AND sent_at IS NULL AND state = 'pending'
"""


@dataclasses.dataclass
class Outgoing:
    """A message to publish: everything the broker needs, nothing that decides what runs."""

    task_name: str
    task_uuid: str
    dbname: str
    record_id: int
    queue: str
    call_repr: str
    eta: datetime.datetime | None = None
    expires_at: datetime.datetime | None = None
    priority: int | None = None

    @classmethod
    def from_row(cls, dbname, row):
        """The message for a ``celery_task`` row (a dict with its columns)."""
        return cls(
            task_name=row["name"],
            task_uuid=row["uuid"],
            dbname=dbname,
            record_id=row["id"],
            queue=row["queue"],
            call_repr=row["call_repr"],
            eta=row.get("eta"),
            expires_at=row.get("expires_at"),
            priority=row.get("priority"),
        )


def _utc(moment):
    return moment.replace(tzinfo=datetime.timezone.utc) if moment else None


def publish(item):
    """Send one message; False (and a log line) when the broker refuses, so the relay retries."""
    try:
        celery_app.send_task(
            item.task_name,
            args=[item.dbname, item.record_id],
            task_id=item.task_uuid,
            queue=item.queue,
            eta=_utc(item.eta),
            expires=_utc(item.expires_at),
            priority=item.priority,
            argsrepr=item.call_repr,
            kwargsrepr="{}",
            retry=False,
        )
    except Exception as exc:  # noqa: BLE001 - any broker failure leaves the task to the relay
        _logger.warning(
            "celery_task: broker refused %s[%s] (%s: %s); it stays in the outbox of %s and the relay will publish it",
            item.task_name,
            item.task_uuid,
            type(exc).__name__,
            exc,
            item.dbname,
        )
        return False
    return True


class Publisher:
    """This process's publisher thread and the records waiting for it; started again after a fork."""

    def __init__(self):
        self._pid = None
        self._start_lock = threading.Lock()

    def _start(self):
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._waiting = collections.deque()
            self._unfinished = 0
            self._changed = threading.Condition()
            threading.Thread(target=_PublisherThread(self).run, name="celery_task publisher", daemon=True).start()
            if self._pid is None:
                atexit.register(self._publish_before_exit)
            self._pid = os.getpid()

    def submit(self, items):
        """Publish ``items`` (records just committed) soon, in this order."""
        if self._pid != os.getpid():
            self._start()
        with self._changed:
            self._waiting.extend(items)
            self._unfinished += len(items)
            self._changed.notify_all()

    def wait_idle(self, timeout):
        """Wait until every submitted record was published and marked sent, or refused; False on timeout."""
        if self._pid != os.getpid():
            return True
        with self._changed:
            return self._changed.wait_for(lambda: not self._unfinished, timeout)

    def take(self, timeout):
        """Up to BATCH waiting records, once there are some or ``timeout`` (None: forever) has passed."""
        with self._changed:
            self._changed.wait_for(lambda: self._waiting, timeout)
            return [self._waiting.popleft() for _ in range(min(BATCH, len(self._waiting)))]

    def finished(self, count):
        """``count`` records were published and marked sent, or refused."""
        with self._changed:
            self._unfinished -= count
            self._changed.notify_all()

    def _publish_before_exit(self):
        if self._pid == os.getpid() and not self.wait_idle(EXIT_WAIT):
            _logger.warning(
                "celery_task: exiting with %d task(s) unpublished; the relay will publish them", self._unfinished
            )


class _PublisherThread:
    """Publishes at once, marks sent in batches: one update per database at most MARK_DELAY after a publish."""

    def __init__(self, publisher):
        self.publisher = publisher
        self.connections = {}  # dbname -> autocommit connection, used by this thread only
        self.unmarked = collections.defaultdict(list)
        self.handled = 0
        self.deadline = None

    def run(self):
        while True:
            timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
            batch = self.publisher.take(timeout)
            try:
                for item in batch:
                    if publish(item):
                        self.unmarked[item.dbname].append(item.record_id)
            except Exception:  # the thread must outlive any failure; the relay covers it
                _logger.exception("celery_task: publisher failed; the relay will publish what it missed")
            self.handled += len(batch)
            if self.unmarked and self.deadline is None:
                self.deadline = time.monotonic() + MARK_DELAY
            pending = sum(len(ids) for ids in self.unmarked.values())
            if self.handled and (not pending or pending >= BATCH or time.monotonic() >= self.deadline):
                self.mark_all()

    def mark_all(self):
        for dbname, record_ids in self.unmarked.items():
            try:
                with self.connection(dbname).cursor() as cr:
                    cr.execute(MARK_SENT, [record_ids])
            except Exception:  # unmarked rows are only published once more by the relay
                _logger.warning("celery_task: could not mark %s of %s as sent", record_ids, dbname, exc_info=True)
                with contextlib.suppress(psycopg2.Error):
                    self.connections.pop(dbname).close()
        self.unmarked.clear()
        self.deadline = None
        self.publisher.finished(self.handled)
        self.handled = 0

    def connection(self, dbname):
        """Autocommit (read committed: a row a worker claimed meanwhile is skipped, not a conflict)."""
        connection = self.connections.get(dbname)
        if connection is None or connection.closed:
            connection = self.connections[dbname] = task_connections.open_autocommit(dbname)
        return connection


publisher = Publisher()

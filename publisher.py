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
import logging
import os
import threading
import time

import psycopg2

from . import compat, task_record
from .app import celery_app, publish_all

_logger = logging.getLogger(__name__)

BATCH = 200
MARK_DELAY = 0.05
EXIT_WAIT = 5.0


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
            # The broker's client library, loaded now: loaded while the interpreter shuts down (a
            # script that exits right after its commit), it cannot register its exit hooks and
            # every publish fails ("can't register atexit after shutdown").
            celery_app.connection_for_write().transport  # noqa: B018 - loads the transport and its client
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
                for item in publish_all(batch):
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
                    cr.execute(task_record.MARK_SENT, {"ids": record_ids})
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
            connection = self.connections[dbname] = compat.open_autocommit(dbname)
        return connection


publisher = Publisher()

"""The worker main process's background thread: every database job of the main process, off Celery's event loop.

Celery's event loop consumes, acknowledges and sends the broker's heartbeats. A statement waiting on
an unreachable PostgreSQL there froze all of it: a host cut from PostgreSQL sat in the live round for
the whole cut, and other workers logged its missed heartbeats. Here a cut only delays the jobs, and
the timeouts of sessions.py end their waits: the loop goes on consuming, and the jobs catch up once
the link heals.

The thread stands for its role's election (worker/leadership.py) and, while it leads, runs:

- every ``celery_relay_interval`` s: the relay for every database served (worker/relay.py), and takes
  the server-wide duties no other leader holds: the housekeeping of its databases and the scan;
- every ``celery_schedule_interval`` s: publishes the scheduled tasks that fell due (worker/scheduler.py);
- every ``celery_live_interval`` s: tells the others which databases it has news of, and, as the
  housekeeper, sends the web clients one live update per database with news (worker/live.py);
- every ``celery_notice_interval`` s, as the housekeeper: the notices;
- every ``celery_database_scan_interval`` s, as the scanner (``db_name`` unset): the databases' scan,
  and a word to every worker when the set changed (they look again themselves).

The event loop and the thread share only memory: the loop hands over what it knows (the queues it
consumes, the databases of its running tasks) and jobs of its own (a failure to record), and takes
back the databases to serve and the queues paused, to consume those and not these
(worker/database_queues.py). Every worker hears at once of a pause or a resume made in Odoo (a
NOTIFY in postgres, models/celery_queue.py): the relay and the publisher of due tasks leave a
paused queue alone.
"""

import collections
import contextlib
import logging
import os
import select
import threading
import time

import psycopg2
from celery import bootsteps
from celery.worker import state as worker_state

from .. import app, compat, config, databases, sessions, task_record
from . import database_queues, leadership, live, metrics, relay, scheduler
from .listener import Listener

_logger = logging.getLogger(__name__)

DATABASES_CHANNEL = "celery_task_databases"  # between workers, in postgres: the set of databases changed
EXCHANGE_SECONDS = 0.25  # how often the event loop and the thread exchange what they know
IDLE_SECONDS = 1.0  # the longest the thread sleeps without a look at its elections
RETRY_SECONDS = 5.0  # after the listener's session could not be opened


class Background:
    """This process's background thread, and what it and the event loop hand each other."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs = collections.deque()
        self._observed = None  # (broker url, queues, databases of running tasks), from the loop
        self._consumption = None  # (databases to serve, broker queues paused), for the loop; None: nothing new
        self._thread = None
        self._stopping = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)

    def start(self):
        if self._thread is None:
            self._thread = threading.Thread(target=_Rounds(self).run, name="celery_task background", daemon=True)
            self._thread.start()

    def stop(self, timeout=10.0):
        """End the thread, resigning its elections and duties so another worker takes them at once."""
        if self._thread is None:
            return
        self._stopping.set()
        self._wake()
        self._thread.join(timeout)
        self._thread = None

    def submit(self, job):
        """Run ``job()`` in the thread, soon: database work the event loop must not wait for."""
        with self._lock:
            self._jobs.append(job)
        self._wake()

    def observe(self, broker_url, queues, running):
        """From the event loop: what this worker consumes now, and the databases of its running tasks."""
        with self._lock:
            self._observed = (broker_url, tuple(sorted(queues)), frozenset(running))

    def take_consumption(self):
        """For the event loop: ``(databases to serve, broker queues paused)`` when they changed since the last
        call; else None."""
        with self._lock:
            consumption, self._consumption = self._consumption, None
        return consumption

    def _wake(self):
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_write, b"\0")


class _Rounds:
    """The thread's state between rounds: its listener, its election, what it heard, when each job is due."""

    def __init__(self, background):
        self.background = background
        self.listener = Listener()
        self.elections = leadership.Elections()
        self.observed = None
        self.consumption = None  # (databases served, broker queues paused), as last handed to the loop
        self.paused = {}  # database -> the names of its paused queues
        self.paused_retry_at = {}  # database -> when to try reading its paused queues again
        self.news = set()  # databases other workers (and this one) told news of, for the housekeeper
        self.notice_databases = set()
        self.due = collections.defaultdict(float)
        self.listener_retry_at = 0.0
        self.scanned = False  # by this worker since it took the scan

    @property
    def housekeeper(self):
        return self.elections.leading and leadership.housekeeping() in self.listener.duties

    def run(self):
        _logger.info("celery_task: background thread started")
        stopping = self.background._stopping
        while not stopping.is_set():
            try:
                self.round()
            except Exception:  # the thread must outlive any failure: the next round tries again
                _logger.exception("celery_task: background round failed")
                time.sleep(1.0)
            self.sleep()
        self.elections.close()
        self.listener.close()
        _logger.info("celery_task: background thread stopped; its elections and duties were released")

    def round(self):
        with self.background._lock:
            observed = self.background._observed
            jobs = list(self.background._jobs)
            self.background._jobs.clear()
        for job in jobs:
            self._guarded("a job of the event loop", job)
        if observed is None:
            return  # the consumer has not started yet: no queues, no role
        self.observed = observed
        self._open_listener()
        self._hear()
        broker_url, queues, _running = observed
        self.elections.stand(leadership.role_of(broker_url, queues) if queues else None)
        if self.elections.advance():
            self.due.clear()  # newly elected: every job at once
        now = time.monotonic()
        for job, interval in (
            (self.live_round, config.addon_option("live_interval")),
            (self.notice_round, config.addon_option("notice_interval")),
            (self.relay_round, config.addon_option("relay_interval")),
            (self.schedule_round, config.addon_option("schedule_interval")),
            (self.scan_round, config.addon_option("database_scan_interval")),
        ):
            if interval > 0 and now >= self.due[job.__name__]:
                self.due[job.__name__] = now + interval
                self._guarded(job.__name__.replace("_", " "), job)
        self._hand_consumption()

    def sleep(self):
        now = time.monotonic()
        timeout = max(0.0, min([IDLE_SECONDS, *(due - now for due in self.due.values())]))
        readers, writers = [self.background._wake_read], []
        if self.listener.usable:
            readers.append(self.listener.connection)
        watched = self.elections.watched()
        if watched is not None:
            (writers if watched[1] else readers).append(watched[0])
        with contextlib.suppress(OSError, ValueError):
            select.select(readers, writers, [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(self.background._wake_read, 64):
                pass

    def _guarded(self, what, job):
        try:
            job()
        except Exception:
            _logger.warning("celery_task: %s failed; trying again at its next round", what, exc_info=True)

    def _open_listener(self):
        """The listener's session, (re)opened when it has none: what was said meanwhile is looked at again."""
        if self.listener.usable or time.monotonic() < self.listener_retry_at:
            return
        self.listener.channels.add(task_record.QUEUES_CHANNEL)
        if databases.discovering():
            self.listener.channels.add(DATABASES_CHANNEL)
        try:
            self.listener.open()
        except psycopg2.Error as exc:
            self.listener_retry_at = time.monotonic() + RETRY_SECONDS
            _logger.warning("celery_task: cannot reach PostgreSQL for the background work (%s); trying again", exc)
            return
        self._look_at_databases()
        self.paused.clear()  # read again: a pause may have been told while nobody listened

    def _hear(self):
        heard = self.listener.heard()
        self.news |= heard.get(live.NEWS_CHANNEL, set())
        if DATABASES_CHANNEL in heard:
            self._look_at_databases()
        for dbname in heard.get(task_record.QUEUES_CHANNEL, ()):
            self.paused.pop(dbname, None)

    def _look_at_databases(self):
        if databases.discovering():
            self._guarded("looking at the databases", lambda: databases.served(refresh=True))

    def _paused(self, dbname):
        """The paused queues of ``dbname``, read when it is served anew or a change of them was told.

        On a connection of its own, closed at once: a worker that stands by keeps no connection to the
        database for this alone.
        """
        if dbname not in self.paused:
            with (
                contextlib.closing(
                    compat.open_connection(dbname, role="celery_task pauses", **sessions.client_parameters())
                ) as connection,
                connection.cursor() as cr,
            ):
                cr.execute(task_record.PAUSED_QUEUES)
                self.paused[dbname] = frozenset(name for (name,) in cr.fetchall())
        return self.paused[dbname]

    def _paused_if_readable(self, dbname):
        """``_paused``, or none while they cannot be read (the claim still keeps a paused queue's tasks from
        running): tried again after RETRY_SECONDS, not every round, as a connection attempt may wait."""
        if time.monotonic() < self.paused_retry_at.get(dbname, 0):
            return frozenset()
        try:
            return self._paused(dbname)
        except Exception as exc:  # noqa: BLE001 - any failure: the same answer, said once per retry
            self.paused_retry_at[dbname] = time.monotonic() + RETRY_SECONDS
            _logger.warning(
                "celery_task: cannot read the paused queues of %s (%s: %s); trying again in %d s",
                dbname,
                type(exc).__name__,
                exc,
                RETRY_SECONDS,
            )
            return frozenset()

    def _unpaused(self, dbname, queues):
        return [queue for queue in queues if queue not in self._paused(dbname)]

    def _hand_consumption(self):
        """What the loop consumes: the databases served; the broker queues of paused queues, when a worker can
        stop one for its database alone (its own queue per database, or one database served)."""
        served = databases.known()
        paused = set()
        for dbname in served:
            paused |= {(dbname, queue) for queue in self._paused_if_readable(dbname)}
        if config.database_queues():
            stopped = {app.broker_queue(queue, dbname) for dbname, queue in paused}
        else:
            stopped = {queue for _, queue in paused} if len(served) == 1 else set()
        consumption = (served, frozenset(stopped))
        if consumption != self.consumption:
            self.consumption = consumption
            with self.background._lock:
                self.background._consumption = (list(served), set(stopped))

    def live_round(self):
        _, _, running = self.observed
        own = live.own_news(set(running))
        if own:
            self.listener.notify(live.NEWS_CHANNEL, sorted(own))
            self._hear()
        if self.housekeeper and self.news:
            self.notice_databases |= live.send_live_updates(self.news & set(databases.known()), self.listener)
        self.news.clear()

    def notice_round(self):
        if not self.housekeeper:
            self.notice_databases.clear()
            return
        if time.monotonic() >= self.due["sweep"]:
            self.due["sweep"] = time.monotonic() + live.SWEEP_SECONDS
            self.notice_databases |= set(databases.known())
        self._in_each(sorted(self.notice_databases), "notices", lambda dbname: live.send_notices(dbname, self.listener))
        self.notice_databases.clear()

    def relay_round(self):
        """As the leader: the relay of every database served, and the duties no other leader holds."""
        if not self.elections.leading:
            if self.listener.duties:
                self.listener.close()  # frees the duties and their LISTEN for another leader
            self.scanned = False
            return
        self.listener.listen(live.NEWS_CHANNEL, on=self.listener.hold(leadership.housekeeping()))
        _, queues, _ = self.observed
        relay_round = lambda dbname: relay.relay_round(dbname, self._unpaused(dbname, queues))  # noqa: E731
        self._in_each(databases.known(), "the relay", relay_round)

    def schedule_round(self):
        """As the leader: publish the scheduled tasks of its queues that fell due, in every database served."""
        if not self.elections.leading:
            return
        _, queues, _ = self.observed
        publish = lambda dbname: scheduler.publish_due(dbname, self._unpaused(dbname, queues))  # noqa: E731
        self._in_each(databases.known(), "publishing due tasks", publish)

    def _in_each(self, dbnames, what, job):
        """``job(dbname)`` for each of ``dbnames``; a failure is logged (or its database forgotten, the addon gone)."""
        for dbname in dbnames:
            try:
                job(dbname)
            except Exception as exc:
                if not databases.forget_if_uninstalled(dbname, exc):
                    _logger.warning("celery_task: %s failed for %s", what, dbname, exc_info=True)

    def scan_round(self):
        """As the scanner: look at the server's databases; tell every worker when they changed, and once at first."""
        if not (self.elections.leading and databases.discovering() and self.listener.hold(leadership.SCAN)):
            return
        before = set(databases.known())
        if set(databases.served(refresh=True)) != before or not self.scanned:
            self.scanned = True
            self.listener.notify(DATABASES_CHANNEL)


background = Background()


def running_databases():
    """The databases of the tasks this worker runs now (read in the event loop, which owns them)."""
    found = set()
    for request in list(worker_state.active_requests):
        args = request.args
        if isinstance(args, (list, tuple)) and args and isinstance(args[0], str):
            found.add(args[0])
    return found


class BackgroundWork(bootsteps.StartStopStep):
    """Consumer bootstep: starts the background thread, and exchanges with it every EXCHANGE_SECONDS.

    A consumer step: the consumer clears its timer when the broker connection is lost and starts its
    steps again once it is back. The thread goes on meanwhile; it ends with the worker.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer, **kwargs):
        super().__init__(consumer, **kwargs)
        self.tref = None
        self.queues = database_queues.DatabaseQueues()

    def start(self, consumer):
        background.start()
        metrics.serve_once()
        self.queues.start(consumer)
        self.exchange(consumer)
        self.tref = consumer.timer.call_repeatedly(EXCHANGE_SECONDS, self.exchange, (consumer,), priority=10)

    def exchange(self, consumer):
        task_consumer = getattr(consumer, "task_consumer", None)
        if task_consumer is None:
            return
        names = {queue.name for queue in task_consumer.queues}
        background.observe(consumer.app.conf.broker_url, self.queues.base(names), running_databases())
        consumption = background.take_consumption()
        if consumption is not None:
            self.queues.follow(consumer, *consumption)

    def stop(self, consumer):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop

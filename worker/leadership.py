"""Which worker does the background work: one leader per role, elected by a lock the server makes the others wait for.

The relay, the publishing of due scheduled tasks, the notices and live updates and the databases'
scan used to run in every worker, so N workers read the task tables N times. Now every worker
stands for its role's election: it asks PostgreSQL for a session advisory lock on a connection of
its own (in ``postgres``, one per worker whatever the number of databases), and the server makes
it wait. The one it grants the lock to leads; the others cost nothing meanwhile (no statement, no
poll: their request waits in the server), and the server grants it to one of them the moment the
leader's session ends: a worker that stops or dies, or one cut off from the server longer than
``celery_host_timeout`` (sessions.py). Like OCA queue_job's high-availability runner (OCA/queue
#668), with the standby waiting in the server instead of polling it.

A role is a broker, the queues a worker consumes and the databases it serves: workers started
alike share one leader, and a worker with other queues or another broker leads its own, so a leader
only publishes to queues a worker of its own broker consumes (as the relay requires). Work that is
not about queues (expiry, notices, live updates) is one duty per set of databases, and the scan one
per server: each a lock that leaders try for at their rounds (:class:`worker.listener.Listener`).
"""

import contextlib
import logging
import time

import psycopg2
import psycopg2.extensions
from kombu.utils.url import maybe_sanitize_url

from odoo.tools import config as odoo_config

from .. import compat, databases, sessions, task_record

_logger = logging.getLogger(__name__)

ROLE = "celery_task election"  # in the application name of the candidacies' sessions
RETRY_SECONDS = (1, 2, 5, 10)

CONNECTING, WAITING, LEADING = "connecting", "waiting", "leading"


def databases_served_key():
    """What the databases a worker serves are named by: its ``db_name``, or its ``dbfilter`` when it finds them."""
    named = databases.configured()
    return "db_name=" + ",".join(sorted(named)) if named else f"dbfilter={odoo_config.get('dbfilter') or ''}"


#: The server-wide duty of looking at the server's databases (``db_name`` unset).
SCAN = "celery_task scan"


def housekeeping():
    """The duty of the work of a set of databases that is not about queues: expiry, notices, live updates."""
    return f"celery_task housekeeping {databases_served_key()}"


def role_of(broker_url, queues):
    """The election of the workers that consume ``queues`` on ``broker_url`` and serve the same databases."""
    return f"celery_task leader {maybe_sanitize_url(broker_url)} {' '.join(sorted(queues))} {databases_served_key()}"


class Candidacy:
    """This worker standing in one election: its connection, and whether it connects, waits or leads."""

    def __init__(self, election):
        self.election = election
        self.connection = None
        self.cursor = None
        self.phase = None
        self.wants = psycopg2.extensions.POLL_WRITE
        self.deadline = 0.0
        self.failures = 0

    @property
    def leading(self):
        return self.phase == LEADING

    def fileno(self):
        return self.connection.fileno()

    def watched(self):
        """``(socket, wants to write)`` while a connection is open, else None."""
        if self.connection is None or self.connection.closed:
            return None
        return self.connection, self.wants == psycopg2.extensions.POLL_WRITE

    def advance(self, now):
        """Go as far as it can without waiting. True when this call made it the leader, False when it lost the lead."""
        if self.connection is None:
            if now < self.deadline:
                return None
            was_leading = self.leading
            try:
                self.connection = compat.open_connection(
                    compat.BUS_DATABASE, role=ROLE, async_=True, **sessions.client_parameters()
                )
            except psycopg2.Error as exc:
                return self._failed(exc, now, was_leading)
            self.phase, self.deadline = CONNECTING, now + sessions.client_parameters()["connect_timeout"]
        was_leading = self.leading
        try:
            state = self.connection.poll()
            while state == psycopg2.extensions.POLL_OK and self.phase != LEADING:
                if self.phase == CONNECTING:
                    self.cursor = self.connection.cursor()
                    self.cursor.execute(task_record.STAND_FOR_ELECTION, {"election": self.election})
                    self.phase = WAITING
                    state = self.connection.poll()
                else:
                    self.phase, self.failures = LEADING, 0
                    _logger.info("celery_task: this worker now leads %s", self.election)
                    return True
        except psycopg2.Error as exc:
            return self._failed(exc, now, was_leading)
        self.wants = state if state != psycopg2.extensions.POLL_OK else psycopg2.extensions.POLL_READ
        if self.phase == CONNECTING and now > self.deadline:
            return self._failed(TimeoutError("no answer from the server"), now, was_leading)
        return None

    def _failed(self, error, now, was_leading):
        self.resign()
        self.deadline = now + RETRY_SECONDS[min(self.failures, len(RETRY_SECONDS) - 1)]
        self.failures += 1
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if was_leading:
            _logger.warning("celery_task: this worker lost the lead of %s (%s); standing again", self.election, message)
            return False
        if self.failures == 1:
            _logger.warning("celery_task: cannot stand for %s (%s); trying again", self.election, message)
        return None

    def resign(self):
        """Leave the election: closing the session frees its lock, or withdraws its request."""
        if self.connection is not None:
            with contextlib.suppress(psycopg2.Error):
                self.connection.close()
        self.connection, self.cursor, self.phase = None, None, None
        self.wants = psycopg2.extensions.POLL_WRITE


class Elections:
    """The election of this worker's role: stood for once its queues are known, stood again when they change."""

    def __init__(self):
        self.candidacy = None

    def stand(self, election):
        """Stand in ``election`` (None: in none), resigning from another one first."""
        if self.candidacy is not None and self.candidacy.election == election:
            return
        if self.candidacy is not None:
            self.candidacy.resign()
            _logger.info("celery_task: no longer standing for %s", self.candidacy.election)
        self.candidacy = Candidacy(election) if election else None

    @property
    def leading(self):
        return self.candidacy is not None and self.candidacy.leading

    def advance(self):
        return None if self.candidacy is None else self.candidacy.advance(time.monotonic())

    def watched(self):
        return None if self.candidacy is None else self.candidacy.watched()

    def close(self):
        self.stand(None)

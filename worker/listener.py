"""The worker main process's session in ``postgres``: what workers tell each other, and the duties one of them holds.

Workers tell each other through NOTIFY in the database every server has (where Odoo's bus listens
too): which databases have news for their web clients (to the worker that sends the live updates),
and that the set of databases changed (to every worker, from the one that scans). A LISTEN costs
the server nothing until something is said. The same session holds the duties a leader takes for
a set of databases or for the server (housekeeping, the scan): session advisory locks, each ended
with the session, so another leader takes it at its next round.

Used only by the background thread (worker/background.py), with the timeouts of sessions.py: an
unreachable server fails its statements instead of holding the thread.
"""

import contextlib
import logging

import psycopg2

from .. import compat, sessions, task_record

_logger = logging.getLogger(__name__)

ROLE = "celery_task listener"
PAYLOAD_BYTES = 7000  # NOTIFY takes at most 8000 bytes


class Listener:
    """One autocommit session in ``postgres``; reopened after a failure, with its LISTENs but without its duties."""

    def __init__(self):
        self.connection = None
        self.channels = set()
        self.duties = set()

    def open(self):
        """The session, opened when there is none: True when this call opened it (what was said before was missed)."""
        if self.connection is not None and not self.connection.closed:
            return False
        self.duties.clear()
        self.connection = compat.open_connection(compat.BUS_DATABASE, role=ROLE, **sessions.client_parameters())
        self.connection.autocommit = True
        with self.connection.cursor() as cr:
            for channel in sorted(self.channels):
                cr.execute(f"LISTEN {_quoted(channel)}")
        return True

    def fileno(self):
        return self.connection.fileno()

    @property
    def usable(self):
        return self.connection is not None and not self.connection.closed

    @contextlib.contextmanager
    def cursor(self):
        """A cursor on the session; a failure closes it (its duties end with it), and is raised."""
        self.open()
        try:
            with self.connection.cursor() as cr:
                yield cr
        except psycopg2.Error:
            self.close()
            raise

    def listen(self, channel, on=True):
        if on == (channel in self.channels):
            return
        with self.cursor() as cr:
            cr.execute(f"{'LISTEN' if on else 'UNLISTEN'} {_quoted(channel)}")
        (self.channels.add if on else self.channels.discard)(channel)

    def notify(self, channel, words=()):
        """Say ``words`` (strings) on ``channel``, in as few notifications as their size allows."""
        payloads, current = [], ""
        for word in words:
            longer = f"{current},{word}" if current else word
            if current and len(longer.encode()) > PAYLOAD_BYTES:
                payloads.append(current)
                longer = word
            current = longer
        payloads.append(current)
        with self.cursor() as cr:
            for payload in payloads:
                cr.execute("SELECT pg_notify(%s, %s)", [channel, payload])

    def heard(self):
        """``{channel: set of words}`` said since the last call (nothing when the session is closed)."""
        if not self.usable:
            return {}
        try:
            self.connection.poll()
        except psycopg2.Error:
            self.close()
            return {}
        heard = {}
        while self.connection.notifies:
            notice = self.connection.notifies.pop(0)
            heard.setdefault(notice.channel, set()).update(word for word in notice.payload.split(",") if word)
        return heard

    def hold(self, duty):
        """Whether this session holds ``duty`` (a lock name), trying to take it when it does not."""
        if duty not in self.duties:
            with self.cursor() as cr:
                cr.execute(task_record.TAKE_DUTY, {"duty": duty})
                if cr.fetchone()[0]:
                    self.duties.add(duty)
                    _logger.info("celery_task: this worker now holds %s", duty)
        return duty in self.duties

    def close(self):
        if self.connection is not None:
            with contextlib.suppress(psycopg2.Error):
                self.connection.close()
        self.connection = None
        self.duties.clear()


def _quoted(channel):
    return '"' + channel.replace('"', '""') + '"'

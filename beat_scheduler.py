"""Celery beat's schedule, read from the ``celery.periodic.task`` records of the served databases.

Like django-celery-beat's database scheduler: edits made in Odoo are noticed while beat runs, by
a cheap version query at most every POLL_SECONDS (beat sleeps at most ``max_interval``). A due
entry is run by the record itself, in a transaction that writes the task into the outbox and
counts the run; the message is published once that transaction commits. Beat does not fork, so
it uses Odoo's pooled cursors, one short transaction at a time.
"""

import datetime
import logging
import time

from celery import beat

from odoo import api
from odoo.modules.registry import Registry

from . import databases

_logger = logging.getLogger(__name__)

MODEL = "celery.periodic.task"
POLL_SECONDS = 1.0
VERSION = "SELECT count(*), max(write_date) FROM celery_periodic_task"


def _utc(moment):
    return moment.replace(tzinfo=datetime.timezone.utc) if moment else None


class DatabaseScheduler(beat.Scheduler):
    """Schedules the enabled periodic tasks of every database in ``db_name``."""

    #: At most this many seconds between two looks at the database when nothing is due.
    max_interval = 5

    #: Runs are published by the outbox when their transaction commits, not by beat's producer.
    producer = None

    def __init__(self, *args, **kwargs):
        self._versions = None
        self._checked_at = 0.0
        super().__init__(*args, **kwargs)

    def setup_schedule(self):
        self.data = {}
        self._refresh()

    def get_schedule(self):
        if time.monotonic() - self._checked_at >= POLL_SECONDS:
            self._refresh()
        return self.data

    schedule = property(get_schedule, beat.Scheduler.set_schedule)

    @property
    def info(self):
        mode = "" if databases.configured() else " (every database with celery_task, found as they come)"
        return f"    . databases -> {', '.join(databases.served()) or 'none yet'}{mode}"

    def _refresh(self):
        """Reload the entries when a database's periodic tasks changed since the last look."""
        self._checked_at = time.monotonic()
        versions = {dbname: self._version(dbname) for dbname in databases.served()}
        if versions == self._versions:
            return
        self._versions = versions
        data = {}
        for dbname, version in versions.items():
            if version is not None:
                data.update(self._load(dbname))
        _logger.info("celery_task beat: %d periodic task(s) scheduled: %s", len(data), ", ".join(sorted(data)))
        self.data = data

    def _version(self, dbname):
        """What changes whenever a periodic task of ``dbname`` is created, edited or deleted."""
        try:
            registry = Registry(dbname).check_signaling()
            if MODEL not in registry:  # the module was uninstalled: the next scan checks it again
                databases.forget(dbname)
                return None
            with registry.cursor() as cr:
                cr.execute(VERSION)
                return cr.fetchone()
        except Exception as exc:
            if not databases.forget_if_uninstalled(dbname, exc):
                _logger.warning("celery_task beat: cannot read the periodic tasks of %s", dbname, exc_info=True)
            return None

    def _load(self, dbname):
        entries = {}
        with Registry(dbname).cursor() as cr:
            env = api.Environment(cr, api.SUPERUSER_ID, {})
            for periodic in env[MODEL]._scheduled():
                name = f"{dbname}:{periodic.id}:{periodic.name}"
                try:
                    schedule = periodic._celery_schedule()
                except Exception:
                    _logger.warning("celery_task beat: %s is not scheduled", name, exc_info=True)
                    continue
                entries[name] = self.Entry(
                    name=name,
                    task=periodic.task,
                    schedule=schedule,
                    last_run_at=_utc(periodic.last_run_at or periodic.create_date),
                    total_run_count=periodic.total_run_count,
                    options={"dbname": dbname, "periodic_id": periodic.id, "version": str(periodic.write_date)},
                    app=self.app,
                )
        return entries

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        """Run ``entry`` through its record: the task goes through the outbox, as the record's user."""
        entry = self.reserve(entry) if advance else entry
        with Registry(entry.options["dbname"]).cursor() as cr:
            env = api.Environment(cr, api.SUPERUSER_ID, {})
            return env[MODEL].browse(entry.options["periodic_id"])._run_scheduled()

"""The database connections of a worker: those a pool process keeps, and the main process's short ones.

A cursor from Odoo's pool resets its connection first (two round trips), and a pool process runs
one task at a time, so it keeps two connections per database instead:

- the lock connection, plain psycopg2 in autocommit: it holds the running task's session advisory
  lock and writes its claim and live progress, with asynchronous commits (a claim lost in a
  database crash only means the task runs again, and its effects were never committed);
- the task cursor, an Odoo cursor for the task's own transaction, which starts each task like a
  new cursor would (no ORM cache, no per-cursor data) and ends it with a commit or a rollback.

Both are opened in the process that uses them, never inherited across a fork, and closed when an
error may have broken them. The main process forks pool children at any time, so it keeps no
connection: it opens one per job and closes it before returning (:func:`main_process_cursor`).
"""

import contextlib
import logging
import os

import psycopg2
import psycopg2.extras

from .. import compat

_logger = logging.getLogger(__name__)

_kept = {}
_releases = {}  # lock connection key -> the task record whose lock the next claim releases


def _close(key):
    _releases.pop(key, None)  # closing the connection releases its locks
    kept = _kept.pop(key, None)
    if kept is not None:
        with contextlib.suppress(psycopg2.Error):
            kept.close()


def _lock_key(dbname):
    return (os.getpid(), "lock", dbname)


def close_all():
    """Close what this process keeps, before it exits (an Odoo cursor left open is logged as a leak)."""
    for key in [key for key in _kept if key[0] == os.getpid()]:
        _close(key)


def lock_connection(dbname):
    """This process's autocommit connection to ``dbname`` for locks, claims and progress."""
    key = _lock_key(dbname)
    connection = _kept.get(key)
    if connection is None or connection.closed:
        _releases.pop(key, None)  # its locks went with it
        connection = _kept[key] = compat.open_autocommit(dbname)
    return connection


def release_with_next_claim(dbname, record_id):
    """Keep ``record_id``'s lock until this process's next claim in ``dbname``, which releases it on the way."""
    _releases[_lock_key(dbname)] = record_id


def take_release(dbname):
    """The task record whose lock the claim about to run on ``dbname``'s lock connection must release, or None."""
    return _releases.pop(_lock_key(dbname), None)


def forget_lock_connection(dbname):
    """Close the lock connection after an error: that also releases every lock it held."""
    _close(_lock_key(dbname))


@contextlib.contextmanager
def task_transaction(registry):
    """A fresh transaction on this process's kept cursor of ``registry``'s database.

    Commits on a clean exit and rolls back otherwise; a cursor that cannot even roll back is closed.
    """
    key = (os.getpid(), "task", registry.db_name)
    cr = _kept.get(key)
    if cr is None or cr.closed:
        cr = _kept[key] = registry.cursor()
    compat.reset_cursor(cr)
    try:
        yield cr
        cr.commit()
    except BaseException:
        try:
            cr.rollback()
        except psycopg2.Error:
            _logger.warning("celery_task: closing a broken connection to %s", registry.db_name)
            _close(key)
        raise


@contextlib.contextmanager
def main_process_cursor(dbname):
    """A dict cursor on a new connection, for the main process; commits on a clean exit, always closes."""
    connection = compat.open_connection(dbname)
    try:
        with connection, connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cr:
            yield cr
    finally:
        connection.close()

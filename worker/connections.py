"""The database connections of a worker: those a pool process keeps, and the main process's short ones.

A cursor from Odoo's pool resets its connection first (two round trips), and a pool process runs
one task at a time, so it keeps two connections per database instead:

- the lock connection, plain psycopg2 in autocommit: it holds the running task's session advisory
  lock and writes its claim and live progress, with asynchronous commits (a claim lost in a
  database crash only means the task runs again, and its effects were never committed);
- the task cursor, an Odoo cursor for the task's own transaction, which starts each task like a
  new cursor would (no ORM cache, no per-cursor data) and ends it with a commit or a rollback.

Both are opened in the process that uses them, never inherited across a fork, and closed when an
error may have broken them.

The main process's background thread (worker/background.py) keeps one connection per database for
its jobs, up to MAIN_PROCESS_CONNECTIONS (:func:`main_process_cursor`): opening one costs 3 to 8 ms,
and the live round runs twice a second. The relay visits every served database each round, in
order: a least-recently-used eviction would close each connection just before its next use once
more databases are served than kept, so those beyond the first MAIN_PROCESS_CONNECTIONS get a
connection for the job only. They carry the timeouts of sessions.py: an unreachable server fails
their statements instead of holding the thread. A pool child forked meanwhile inherits them and
never touches them: they are keyed by the pid that opened them, and a pool process ends with
``os._exit``, which closes nothing.
"""

import collections
import contextlib
import logging
import os
import select

import psycopg2
import psycopg2.extras

from .. import compat, sessions

_logger = logging.getLogger(__name__)

MAIN_PROCESS_CONNECTIONS = 8
JOBS_ROLE = "celery_task jobs"  # in the application name of main_process_cursor's connections

_kept = {}
_releases = {}  # lock connection key -> the task record whose lock the next claim releases
_jobs = collections.defaultdict(dict)  # pid -> {dbname: kept connection for main_process_cursor}


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
    for dbname in list(_jobs[os.getpid()]):
        _forget_job_connection(dbname)


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
    """A dict cursor in a new transaction on this process's kept connection to ``dbname``; commits on a
    clean exit. A connection that fails is closed: the next job opens another."""
    connection = _job_connection(dbname)
    try:
        with connection, connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cr:
            yield cr
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        _forget_job_connection(dbname)
        raise
    finally:
        if dbname not in _jobs[os.getpid()]:
            connection.close()


def _job_connection(dbname):
    """The kept connection to ``dbname``; one for this job only when as many are kept for other databases."""
    mine = _jobs[os.getpid()]
    connection = mine.get(dbname)
    if connection is not None and not connection.closed and select.select([connection], [], [], 0)[0]:
        connection.close()  # an idle session that LISTENs to nothing hears from the server only when it ends
    if connection is None or connection.closed:
        mine.pop(dbname, None)
        connection = compat.open_connection(dbname, role=JOBS_ROLE, **sessions.client_parameters())
        if len(mine) < MAIN_PROCESS_CONNECTIONS:
            mine[dbname] = connection
    return connection


def _forget_job_connection(dbname):
    connection = _jobs[os.getpid()].pop(dbname, None)
    if connection is not None:
        with contextlib.suppress(psycopg2.Error):
            connection.close()

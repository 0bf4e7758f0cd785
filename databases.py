"""The databases a worker and beat serve: those ``db_name`` names, or every one that has the addon.

With ``db_name`` set (comma-separated), exactly those. With it unset, every database on the server
that the Odoo database user owns, that Odoo's ``dbfilter`` lets through (its ``%h``/``%d`` match
any host: a worker has none) and that has ``celery_task`` installed, found again every
``celery_database_scan_interval`` seconds: a database created, or that installs the module, is
served within that time, and one dropped stops being served. A task for a database not seen yet is
checked at once. ``list_db = False`` forbids listing: then ``db_name`` must name them.

A scan lists the databases on one connection and connects only to those it did not serve already,
to see whether they have the addon: connecting costs 3 to 8 ms, in the event loop of the worker's
main process (50 databases checked every 5 s took 345 ms a scan). A served database whose tables of
the addon are gone (the module uninstalled) is forgotten by the job that finds it
(:func:`forget_if_uninstalled`) and checked again at the next scan.

Everything here opens its own short connections: the worker's main process keeps none across a fork.
"""

import contextlib
import logging
import os
import re
import threading
import time

import psycopg2
import psycopg2.errors

from odoo.tools import config as odoo_config

from . import compat, config

_logger = logging.getLogger(__name__)

# As Odoo's own list_dbs: databases of the current user that accept connections, not templates.
LIST_DATABASES = """
    SELECT datname FROM pg_database
     WHERE datdba = (SELECT usesysid FROM pg_user WHERE usename = current_user)
       AND NOT datistemplate AND datallowconn AND datname <> ALL(%(excluded)s)
     ORDER BY datname
"""

HAS_ADDON = """
    SELECT 1 FROM ir_module_module WHERE name = 'celery_task' AND state IN ('installed', 'to upgrade')
"""

#: How long a database found not served is taken at its word before it is checked again.
NEGATIVE_SECONDS = 1.0

_lock = threading.Lock()
_found = {"at": None, "served": ()}
_checked = {}  # database -> (monotonic time of the check, served?)


def _new_lock():
    """In a forked child: a lock of its own (the worker's background thread may hold the parent's during a scan)."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock)


def configured():
    """The databases ``db_name`` names (a list on 19.0, a comma-separated string before); [] when unset."""
    names = odoo_config.get("db_name") or ""
    if isinstance(names, (list, tuple)):
        names = ",".join(names)
    return [name.strip() for name in names.split(",") if name.strip()]


def discovering():
    """True when the databases are found on the server rather than named."""
    return not configured()


def check_discovery_allowed():
    """Raise SystemExit when the databases can be neither named nor listed."""
    if discovering() and not odoo_config.get("list_db", True):
        raise SystemExit(
            "celery_task: list_db is off and db_name is empty: name the databases to serve in db_name (or pass -d)"
        )


def served(refresh=False):
    """The databases served now: named ones, or those found at most a scan interval ago."""
    named = configured()
    if named:
        return named
    interval = config.addon_option("database_scan_interval")
    with _lock:
        stale = _found["at"] is None or time.monotonic() - _found["at"] >= interval
        if refresh or stale:
            _found["served"], _found["at"] = tuple(_discover()), time.monotonic()
        return list(_found["served"])


def known():
    """The databases served as last found, without looking again (the worker's background thread decides when)."""
    named = configured()
    if named:
        return named
    with _lock:
        return list(_found["served"])


def is_served(dbname):
    """Whether ``dbname`` is served: one database checked, its answer kept a scan interval (a "no": a second)."""
    named = configured()
    if named:
        return dbname in named
    with _lock:
        checked = _checked.get(dbname)
    if checked is not None:
        checked_at, answer = checked
        keep = config.addon_option("database_scan_interval") if answer else NEGATIVE_SECONDS
        if time.monotonic() - checked_at < keep:
            return answer
    answer = _passes_filter(dbname) and _has_addon(dbname)
    with _lock:
        _checked[dbname] = (time.monotonic(), answer)
    return answer


def forget(dbname):
    """``dbname`` was found gone, or without the addon: no longer served, checked again next time."""
    with _lock:
        _checked.pop(dbname, None)
        _found["served"] = tuple(name for name in _found["served"] if name != dbname)


def forget_if_uninstalled(dbname, error):
    """True, and ``dbname`` forgotten, when ``error`` (from a job on it) says the addon's tables are gone."""
    if not isinstance(error, psycopg2.errors.UndefinedTable) or not discovering():
        return False
    forget(dbname)
    _logger.warning(
        "celery_task: database %s no longer has the tables of celery_task (the module was uninstalled?): "
        "not served until a scan finds the module installed again (%s)",
        dbname,
        str(error).strip().splitlines()[0],
    )
    return True


def exists(dbname):
    """Whether the server has a database named ``dbname`` (to say why a task cannot run)."""
    return dbname in _list_all()


def _discover():
    served = set(_found["served"])
    return [dbname for dbname in _list_all() if _passes_filter(dbname) and (dbname in served or _has_addon(dbname))]


def _list_all():
    excluded = sorted({"postgres", odoo_config.get("db_template") or "template0"})
    with contextlib.closing(compat.open_connection("postgres")) as connection, connection.cursor() as cr:
        cr.execute(LIST_DATABASES, {"excluded": excluded})
        return [name for (name,) in cr.fetchall()]


def _passes_filter(dbname):
    dbfilter = odoo_config.get("dbfilter")
    if not dbfilter:
        return True
    return re.match(dbfilter.replace("%h", ".*").replace("%d", ".*"), dbname) is not None


def _has_addon(dbname):
    try:
        with contextlib.closing(compat.open_connection(dbname)) as connection, connection.cursor() as cr:
            cr.execute(HAS_ADDON)
            return cr.fetchone() is not None
    except psycopg2.Error:  # gone meanwhile, not an Odoo database, or not ours to read
        return False

"""What differs between the Odoo series this addon supports, and the Odoo internals it leans on: this module only.

Supported: 17.0, 18.0, 19.0. A new series is one entry in :data:`SERIES` and whatever branch
below it changes (see docs/series.md).
"""

import contextlib
import functools
import json
import logging
import os

import psycopg2
import psycopg2.sql

from odoo import release, sql_db
from odoo.modules.registry import _CACHES_BY_KEY, Registry
from odoo.sql_db import connection_info_for

_logger = logging.getLogger(__name__)

#: The series this addon is tested on, by major version.
SERIES = (17, 18, 19)

ODOO_MAJOR = release.version_info[0]

#: ``res.users``' field of its groups (19.0 renamed it).
USER_GROUPS_FIELD = "group_ids" if ODOO_MAJOR >= 19 else "groups_id"

#: The function Odoo's bus calls to notify its listeners (``ODOO_NOTIFY_FUNCTION``, as the bus reads it).
BUS_NOTIFY_FUNCTION = os.environ.get("ODOO_NOTIFY_FUNCTION", "pg_notify")

#: The keyword of a field's aggregate in graph and pivot views (``group_operator`` before 18.0).
AGGREGATOR = "aggregator" if ODOO_MAJOR >= 18 else "group_operator"

#: What a browser tour logs when it succeeds (the tests read it).
TOUR_SUCCEEDED = "tour succeeded" if ODOO_MAJOR >= 18 else "test successful"


def insert_bus_notification(cr, channel, notification_type, payload):
    """Write a bus notification on a plain cursor, as ``bus.bus._sendone`` does in the ORM.

    ``channel``: a list, ``[dbname, "res.partner", id]`` for a user's web clients, or ``[dbname,
    name]`` for a named channel. The web clients get it once :func:`notify_bus` names the channel
    after the commit. The same row on every series.
    """
    cr.execute(
        "INSERT INTO bus_bus (channel, message, create_date, write_date) VALUES (%s, %s, now() AT TIME ZONE 'UTC',"
        " now() AT TIME ZONE 'UTC')",
        [_bus_json(channel), _bus_json({"type": notification_type, "payload": payload})],
    )


#: Where Odoo's bus listens (``LISTEN imbus``): a cursor on it is what :func:`notify_bus` takes.
BUS_DATABASE = "postgres"


def notify_bus(cr, channels):
    """Tell Odoo's bus listeners which channels have news, once ``cr`` (on BUS_DATABASE) commits."""
    notify = psycopg2.sql.SQL("SELECT {}('imbus', %s)").format(psycopg2.sql.Identifier(BUS_NOTIFY_FUNCTION))
    cr.execute(notify, [_bus_json(list(channels))])


def notify_postgres(channel, payload):
    """NOTIFY ``channel`` in BUS_DATABASE, where workers listen (worker/listener.py), through Odoo's pool."""
    with sql_db.db_connect(BUS_DATABASE).cursor() as cr:
        cr.execute("SELECT pg_notify(%s, %s)", [channel, payload])


def _bus_json(value):
    return json.dumps(value, separators=(",", ":"))


def check_access(records, operation):
    """Raise AccessError unless the user may apply ``operation`` to ``records`` (model rights and rules)."""
    if ODOO_MAJOR >= 18:
        records.check_access(operation)
    else:
        records.check_access_rights(operation)
        records.check_access_rule(operation)


def check_signaling(registry, cr):
    """``registry`` brought up to date with what other processes signaled; 17.0 reads on a cursor of its own."""
    return registry.check_signaling(cr) if ODOO_MAJOR >= 18 else registry.check_signaling()


@contextlib.contextmanager
def manage_changes(registry):
    """Signal the registry and cache changes made inside to other processes, or drop them on error.

    What ``Registry.manage_changes`` does (deprecated in 19.0), with the calls every series has.
    """
    try:
        yield registry
        registry.signal_changes()
    except Exception:
        registry.reset_changes()
        raise


@functools.cache
def signaling_sql():
    """``Registry.get_sequences``'s values as a select list to fold into another query, and the cache names.

    The columns are ``registry_sequence`` and ``cache_sequence_<name>``, as scalar subqueries: a
    join of that many relations costs PostgreSQL about 1 ms to plan. Sequences until 18.0;
    insert-only tables since 19.0.
    """
    cache_names = tuple(_CACHES_BY_KEY)
    if ODOO_MAJOR >= 19:
        sources = [("registry_sequence", "max(id) FROM orm_signaling_registry")]
        sources += [(f"cache_sequence_{name}", f"max(id) FROM orm_signaling_{name}") for name in cache_names]
    else:
        sources = [("registry_sequence", "last_value FROM base_registry_signaling")]
        sources += [(f"cache_sequence_{name}", f"last_value FROM base_cache_signaling_{name}") for name in cache_names]
    if ODOO_MAJOR < 18:  # see up_to_date_registry
        sources.append(("modules_stamp", "max(write_date) FROM ir_module_module"))
    return ", ".join(f"(SELECT {source}) AS {column}" for column, source in sources), cache_names


def up_to_date_registry(registry, cr, row):
    """``registry``, reloaded when another process changed it, from the signaling columns read in ``row``.

    17.0's ``odoo -u ... --stop-after-init`` upgrades modules without signaling it (18.0 signals it
    from ``Registry.new``): there, a change of the modules' last write also reloads the registry.
    """
    stamp = row.get("modules_stamp")
    if stamp is not None and getattr(registry, "_celery_task_modules_stamp", stamp) != stamp:
        _logger.info("celery_task: the modules of %s changed without a signal; reloading its registry", cr.dbname)
        registry = Registry.new(registry.db_name)
    else:
        cache_sequences = {name: row[f"cache_sequence_{name}"] for name in signaling_sql()[1]}
        if registry.registry_sequence != row["registry_sequence"] or registry.cache_sequences != cache_sequences:
            registry = check_signaling(registry, cr)
    registry._celery_task_modules_stamp = stamp
    return registry


def forget_registry(dbname):
    """Drop ``dbname``'s registry from this process (its database is gone)."""
    Registry.delete(dbname)


def set_transaction_now(cr, now):
    """Give ``cr`` its transaction's ``now() AT TIME ZONE 'UTC'``, read by another query: ``cr.now()`` won't ask."""
    cr._now = now


def reset_cursor(cr):
    """Start ``cr``'s next transaction as a new cursor would: no ORM cache, a new Environment transaction."""
    cr.transaction = None
    cr.cache.clear()


def open_connection(dbname, role=None, **parameters):
    """A plain psycopg2 connection to ``dbname``, with Odoo's connection settings (host, user, application name).

    ``role`` is appended to the application name, so ``pg_stat_activity`` tells what the session is for.
    ``parameters``: more of libpq's and psycopg2's (timeouts, ``async_``).
    """
    _, info = connection_info_for(dbname)
    if role:
        info["application_name"] = f"{info['application_name']} {role}"[:63]
    return psycopg2.connect(**info, **parameters)


def open_autocommit(dbname):
    """:func:`open_connection` in autocommit (read committed), with asynchronous commits."""
    connection = open_connection(dbname)
    connection.autocommit = True
    with connection.cursor() as cr:
        cr.execute("SET synchronous_commit TO OFF")
    return connection


def abandon_inherited_pools():
    """In a forked child: forget the parent's pooled connections without using or closing them.

    Returns the pools abandoned (to keep referenced, so they are never garbage-collected and
    closed). 18.0 added a second pool for read-only replicas.
    """
    abandoned = []
    for name in ("_Pool", "_Pool_readonly"):
        pool = getattr(sql_db, name, None)
        if pool is not None and pool._connections:
            abandoned.append(pool)
            setattr(sql_db, name, None)
    return abandoned

"""What differs between the Odoo series this addon supports, and the Odoo internals it leans on: this module only.

Supported: 17.0, 18.0, 19.0. A new series is one entry in :data:`SERIES` and whatever branch
below it changes (see README: Supported Odoo series).
"""

import contextlib
import functools

import psycopg2

from odoo import release, sql_db
from odoo.modules.registry import _CACHES_BY_KEY, Registry
from odoo.sql_db import connection_info_for

#: The series this addon is tested on, by major version.
SERIES = (17, 18, 19)

ODOO_MAJOR = release.version_info[0]

#: ``res.users``' field of its groups (19.0 renamed it).
USER_GROUPS_FIELD = "group_ids" if ODOO_MAJOR >= 19 else "groups_id"

#: What a browser tour logs when it succeeds (the tests read it).
TOUR_SUCCEEDED = "tour succeeded" if ODOO_MAJOR >= 18 else "test successful"


def send_bus_notification(user, notification_type, payload):
    """Queue ``payload`` for ``user``'s web clients, sent when the transaction commits.

    ``bus.bus._sendone`` on the user's partner is what every series' ``_bus_send`` comes down to.
    Returns False when the bus module is not installed: notifications are a convenience.
    """
    if "bus.bus" not in user.env:
        return False
    user.env["bus.bus"]._sendone(user.partner_id, notification_type, payload)
    return True


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
    return ", ".join(f"(SELECT {source}) AS {column}" for column, source in sources), cache_names


def registry_is_current(registry, registry_sequence, cache_sequences):
    """True when ``registry`` already holds what the signaling sequences say (``check_signaling`` would do nothing)."""
    return registry.registry_sequence == registry_sequence and registry.cache_sequences == cache_sequences


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


def open_connection(dbname):
    """A plain psycopg2 connection to ``dbname``, with Odoo's connection settings (host, user, application name)."""
    _, info = connection_info_for(dbname)
    return psycopg2.connect(**info)


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

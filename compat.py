"""What differs between the Odoo series this addon supports, and the Odoo internals it leans on: this module only."""

import functools

import psycopg2

from odoo import release, sql_db
from odoo.modules.registry import _CACHES_BY_KEY
from odoo.sql_db import connection_info_for

ODOO_MAJOR = release.version_info[0]

# The list view type: ``list`` since Odoo 18, ``tree`` before.
LIST_VIEW = "list" if ODOO_MAJOR >= 18 else "tree"


def send_bus_notification(user, notification_type, payload):
    """Queue ``payload`` for ``user``'s web clients, sent when the transaction commits.

    Returns False when the bus module is not installed: notifications are a convenience.
    """
    if "bus.bus" not in user.env:
        return False
    if ODOO_MAJOR >= 18:
        user._bus_send(notification_type, payload)
    else:
        user.env["bus.bus"]._sendone(user.partner_id, notification_type, payload)
    return True


def action_url(xmlid):
    """The web client's address of a window action."""
    return f"/odoo/action-{xmlid}" if ODOO_MAJOR >= 18 else f"/web#action={xmlid}"


def check_access(records, operation):
    """Raise AccessError unless the user may apply ``operation`` to ``records`` (model rights and rules)."""
    if ODOO_MAJOR >= 18:
        records.check_access(operation)
    else:
        records.check_access_rights(operation)
        records.check_access_rule(operation)


@functools.cache
def signaling_sql():
    """``Registry.get_sequences``'s values as a select list to fold into another query, and the cache names.

    The columns are ``registry_sequence`` and ``cache_sequence_<name>``. Scalar subqueries rather
    than Odoo's cross join of six sequences: that join alone takes PostgreSQL about 1 ms to plan.
    """
    cache_names = tuple(_CACHES_BY_KEY)
    columns = [
        ("registry_sequence", "base_registry_signaling"),
        *((f"cache_sequence_{name}", f"base_cache_signaling_{name}") for name in cache_names),
    ]
    return ", ".join(f"(SELECT last_value FROM {sequence}) AS {column}" for column, sequence in columns), cache_names


def registry_is_current(registry, registry_sequence, cache_sequences):
    """True when ``registry`` already holds what the signaling sequences say (``check_signaling`` would do nothing)."""
    return registry.registry_sequence == registry_sequence and registry.cache_sequences == cache_sequences


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


def abandon_inherited_pool():
    """In a forked child: forget the parent's pooled connections without using or closing them.

    Returns the pool abandoned (kept referenced, so it is never garbage-collected and closed), or None.
    """
    pool = sql_db._Pool
    if pool is None or not pool._connections:
        return None
    sql_db._Pool = None
    return pool

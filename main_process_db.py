"""Short-lived, unpooled connections for the worker's main process.

The main process forks pool children at any time; a connection it keeps open would be copied
into them. It therefore opens a connection per job and closes it before returning.
"""

import contextlib

import psycopg2
import psycopg2.extras

from odoo.sql_db import connection_info_for


@contextlib.contextmanager
def cursor(dbname):
    """A dict cursor on a fresh connection; commits on a clean exit, always closes."""
    _, info = connection_info_for(dbname)
    connection = psycopg2.connect(**info)
    try:
        with connection, connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cr:
            yield cr
    finally:
        connection.close()

"""Tell a task's user, through Odoo's bus, that it finished or failed.

The notification is queued in the same transaction that records the outcome: it goes out when
that commits and never announces an outcome that was rolled back. It runs in a savepoint, so a
failure to notify never changes the outcome; the savepoint is taken outside the error handling, so
an error of the outcome's own transaction is never mistaken for one of the notification.
"""

import logging

from odoo import api

_logger = logging.getLogger(__name__)


def notify_outcome(cr, record_id):
    """Queue the notification of task record ``record_id``'s outcome in ``cr``'s transaction; never raises."""
    savepoint = cr.savepoint()  # flushes pending writes: their errors belong to the caller
    try:
        with savepoint:
            env = api.Environment(cr, api.SUPERUSER_ID, {})
            task = env["celery.task"].browse(record_id).exists()
            return bool(task) and task._notify_owner()
    except Exception:
        _logger.warning("celery_task: could not notify the outcome of task %s", record_id, exc_info=True)
        return False

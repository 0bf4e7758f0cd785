"""What runs only inside a Celery worker: the task runner in the pool processes, the relay and the
signal handlers in the main process. The caller's side never imports it.

:func:`install` is the one entry: the bootstrap calls it before the worker starts.
"""

from . import database_queues, live, relay, signals


def install(app):
    """Connect the worker's signal handlers; add the relay and the databases' queues to ``app``'s consumer."""
    signals.connect()
    app.steps["consumer"].add(relay.OutboxRelay)
    app.steps["consumer"].add(database_queues.DatabaseQueues)
    app.steps["consumer"].add(live.LiveUpdates)

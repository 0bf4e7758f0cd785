"""What runs only inside a Celery worker: the task runner in the pool processes, the background work
and the signal handlers in the main process. The caller's side never imports it.

:func:`install` is the one entry: the bootstrap calls it before the worker starts.
"""

from . import background, signals


def install(app):
    """Connect the worker's signal handlers; add the background work (relay, live updates, databases) to ``app``."""
    signals.connect()
    app.steps["consumer"].add(background.BackgroundWork)

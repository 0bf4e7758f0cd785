"""The one Celery app of this Odoo process, configured lazily from the Odoo config."""

import logging

from celery import Celery, Task
from celery.backends.base import DisabledBackend

from . import config

_logger = logging.getLogger(__name__)

celery_app = Celery("odoo", set_as_current=False)
celery_app.add_defaults(config.celery_settings)


class OdooTask(Task):
    """Base of every decorated task: the body is the generic runner, progress is mirrored."""

    abstract = True
    Request = "odoo.addons.celery_task.worker_request:OdooRequest"
    acks_late = True
    reject_on_worker_lost = True
    typing = False

    def update_state(self, task_id=None, state=None, meta=None, **kwargs):
        """Report progress to the task record and, when one is configured and up, the result backend."""
        from . import runner

        runner.record_progress(state, meta)
        if isinstance(self.backend, DisabledBackend):
            return
        try:
            super().update_state(task_id=task_id, state=state, meta=meta, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the task goes on; its record has the progress
            _logger.warning("celery_task: result backend refused progress of %s: %s", self.request.id, exc)


def register_task(spec):
    """Declare ``spec`` as a Celery task named ``<model>.<name>``; the body runs it in Odoo."""

    def run(self, *args, **kwargs):
        from . import runner

        return runner.run(self, spec, args, kwargs)

    run.__name__ = spec.name
    run.__qualname__ = spec.task_name
    run.__module__ = spec.func.__module__
    return celery_app.task(
        name=spec.task_name,
        base=OdooTask,
        bind=True,
        shared=False,
        max_retries=spec.max_retries,
        time_limit=spec.time_limit,
        soft_time_limit=spec.soft_time_limit,
    )(run)


def reconfigure(**overrides):
    """Apply new settings and drop pooled broker connections (tests switch brokers with this).

    Records already handed to the publisher go out first, on the broker they were committed for.
    """
    from .publisher import publisher

    publisher.wait_idle(timeout=10)
    celery_app.conf.update(config.celery_settings())
    celery_app.conf.update(overrides)
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    celery_app._backend_cache = None
    celery_app._local.__dict__.clear()

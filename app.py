"""The one Celery app of this Odoo process, configured lazily from the Odoo config; the one way to publish."""

import contextlib
import datetime
import functools
import logging
import threading
import time

from celery import Celery, Task
from celery.backends.base import DisabledBackend
from celery.utils.imports import symbol_by_name
from kombu.exceptions import OperationalError

from . import config, tracing

_logger = logging.getLogger(__name__)

celery_app = Celery("odoo", set_as_current=False)
celery_app.add_defaults(config.celery_settings)


@functools.cache
def _resolve(dotted):
    return symbol_by_name(dotted)


class OdooTask(Task):
    """Base of every decorated task: the body is the worker's runner, progress is mirrored.

    The worker's parts are named by dotted paths, as Celery names its own: the caller's process
    never imports them.
    """

    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    typing = False

    #: The worker's request class: it records the failure of a task killed by its hard time limit.
    Request = "odoo.addons.celery_task.worker.request:OdooRequest"

    #: ``run(task, spec)``: the body of every decorated task, in a pool process.
    runner = "odoo.addons.celery_task.worker.runner:run"

    #: ``record(state, meta)``: writes ``update_state``'s progress to the task's progress row.
    progress_recorder = "odoo.addons.celery_task.worker.outcome:record_progress"

    def update_state(self, task_id=None, state=None, meta=None, **kwargs):
        """Report progress to the task record and, when one is configured and up, the result backend."""
        _resolve(self.progress_recorder)(state, meta)
        if isinstance(self.backend, DisabledBackend):
            return
        try:
            super().update_state(task_id=task_id, state=state, meta=meta, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the task goes on; its record has the progress
            _logger.warning("celery_task: result backend refused progress of %s: %s", self.request.id, exc)


def register_task(spec):
    """Declare ``spec`` as a Celery task named ``<model>.<name>``; the body runs it in Odoo."""

    def run(self, *args, **kwargs):
        return _resolve(self.runner)(self, spec)

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
        rate_limit=spec.rate_limit,
    )(run)


_consumers = {"at": None, "found": {}}
_consumers_lock = threading.Lock()


def consumers(max_age=30.0):
    """``{broker queue: (consumers, pool processes)}``, as the workers that answer within a second say;
    asked again at most every ``max_age`` seconds (a broadcast that every worker answers)."""
    with _consumers_lock:
        if _consumers["at"] is not None and time.monotonic() - _consumers["at"] < max_age:
            return _consumers["found"]
        inspect = celery_app.control.inspect(timeout=1.0)
        try:
            queues, stats = inspect.active_queues() or {}, inspect.stats() or {}
        except Exception as exc:  # noqa: BLE001 - a broker down: nobody answers
            _logger.warning("celery_task: could not ask the workers what they consume: %s", exc)
            queues, stats = {}, {}
        found = {}
        for worker, consumed in queues.items():
            processes = (stats.get(worker) or {}).get("pool", {}).get("max-concurrency", 0)
            for queue in consumed:
                count, concurrency = found.get(queue["name"], (0, 0))
                found[queue["name"]] = (count + 1, concurrency + processes)
        _consumers.update(at=time.monotonic(), found=found)
        return found


def broker_queue(queue, dbname):
    """The broker's queue of a task of ``dbname`` bound for ``queue`` (see ``config.database_queues``)."""
    return f"{queue}.{dbname}" if config.database_queues() else queue


def _utc(moment):
    return moment.replace(tzinfo=datetime.timezone.utc) if moment else None


def publish_all(messages):
    """Send ``messages`` in this order through one producer; returns those the broker took.

    Where the transport can (Redis), they go in one pipelined batch: a publish each costs the Redis
    transport a new client, 0.46 ms of CPU against 0.17 ms batched. A refused message is logged and
    stays in the outbox: the relay publishes it again. After a connection error the rest are not
    tried: they would wait for the same broker, one connection timeout each.
    """
    buffered, refused = [], []
    try:
        with celery_app.producer_or_acquire() as producer, _batch(producer, len(messages)):
            for index, message in enumerate(messages):
                try:
                    _send(message, producer)
                except OperationalError as exc:
                    refused = [(rest, exc) for rest in messages[index:]]
                    break
                except Exception as exc:  # noqa: BLE001 - this message only: the others go on
                    refused.append((message, exc))
                else:
                    buffered.append(message)
    except Exception as exc:  # noqa: BLE001 - the batch did not reach the broker: none of it was taken
        refused = [(message, exc) for message in buffered] + refused
        buffered = []
    for message, exc in refused:
        _logger.warning(
            "celery_task: broker refused %s[%s] (%s: %s); it stays in the outbox of %s and the relay will publish it",
            message.task_name,
            message.task_uuid,
            type(exc).__name__,
            exc,
            message.dbname,
        )
    return buffered


def _batch(producer, count):
    """Pipeline the publishes of more than one message where the transport supports it (kombu 5.7 and later)."""
    if count > 1 and getattr(producer, "supports_batch_publish", False):
        return producer.batch()
    return contextlib.nullcontext()


#: A task's priority: 0 runs first, 9 last, on both brokers (as in OCA queue_job); a call that gives
#: none is in the middle.
DEFAULT_PRIORITY = 5
HIGHEST_PRIORITY = 9


def broker_priority(priority, producer):
    """``priority`` as ``producer``'s broker orders it: RabbitMQ delivers the highest number first (its
    queues are declared with ``x-max-priority``, see config), Redis the lowest (kombu's priority steps)."""
    priority = DEFAULT_PRIORITY if priority is None else priority
    return HIGHEST_PRIORITY - priority if producer.connection.transport.driver_type == "amqp" else priority


def _send(message, producer):
    with tracing.call_context(message.traceparent):
        celery_app.send_task(
            message.task_name,
            args=message.args,
            task_id=message.task_uuid,
            queue=broker_queue(message.queue, message.dbname),
            eta=_utc(message.eta),
            expires=_utc(message.expires_at),
            priority=broker_priority(message.priority, producer),
            time_limit=message.time_limit,
            soft_time_limit=message.soft_time_limit,
            argsrepr=message.call_repr,
            kwargsrepr="{}",
            headers=tracing.headers(message.traceparent),
            retry=False,
            producer=producer,
        )


def reconfigure(**overrides):
    """Apply new settings and drop pooled broker connections (tests and the bench switch brokers with this).

    Wait for the publisher first (``publisher.wait_idle``) to send what was committed for the old broker.
    """
    config.database_queues.cache_clear()
    config.configured_limit_sizes.cache_clear()
    config.schedule_horizon.cache_clear()
    celery_app.conf.update(config.celery_settings())
    celery_app.conf.update(overrides)
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    celery_app._backend_cache = None
    celery_app._local.__dict__.clear()

"""Each served database's own queues: the worker consumes ``<queue>.<database>`` for every queue it
was started with and every database it serves, new ones included, and stops for dropped ones.

On with ``celery_database_queues`` (by default when ``db_name`` is unset). The broker then hands a
worker the queues in turn (Redis polls them round robin; RabbitMQ feeds each consumer), so a
backlog in one database does not hold up a fresh task of another.
"""

import logging

from celery import bootsteps

from .. import app, config, databases

_logger = logging.getLogger(__name__)


class DatabaseQueues(bootsteps.StartStopStep):
    """Consumer bootstep: follows the served databases every ``celery_database_scan_interval`` seconds."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer, **kwargs):
        super().__init__(consumer, **kwargs)
        self.tref = None
        self.base_queues = None
        self.consumed = set()

    def start(self, consumer):
        if not config.database_queues():
            return
        if self.base_queues is None:  # the -Q queues; a restart after an outage finds ours added
            self.base_queues = sorted(queue.name for queue in consumer.task_consumer.queues)
        self.follow(consumer)
        interval = config.addon_option("database_scan_interval")
        self.tref = consumer.timer.call_repeatedly(interval, self.follow, (consumer,), priority=10)

    def follow(self, consumer):
        try:
            served = databases.served(refresh=True)
        except Exception:
            _logger.exception("celery_task: could not list the databases to serve; keeping the queues as they are")
            return
        wanted = {app.broker_queue(queue, dbname) for queue in self.base_queues for dbname in served}
        for name in sorted(wanted - self.consumed):
            consumer.add_task_queue(name)
            _logger.info("celery_task: consuming %s", name)
        for name in sorted(self.consumed - wanted):
            consumer.cancel_task_queue(name)
            _logger.info("celery_task: no longer consuming %s (its database is no longer served)", name)
        self.consumed = wanted

    def stop(self, consumer):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop

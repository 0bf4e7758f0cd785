"""Each served database's own queues: the worker consumes ``<queue>.<database>`` for every queue it
was started with and every database it serves, new ones included, and stops for dropped ones.

On with ``celery_database_queues`` (by default when ``db_name`` is unset). The broker then hands a
worker the queues in turn (Redis polls them round robin; RabbitMQ feeds each consumer), so a
backlog in one database does not hold up a fresh task of another. The background thread finds the
databases (worker/background.py); the event loop, which owns the consumer, follows them here.
"""

import logging

from .. import app, config

_logger = logging.getLogger(__name__)


class DatabaseQueues:
    """The queues this worker consumes for the databases it serves, beside those it was started with."""

    def __init__(self):
        self.base_queues = None
        self.consumed = set()

    def start(self, consumer):
        if self.base_queues is None:  # the -Q queues; a restart after an outage finds ours added
            self.base_queues = sorted(queue.name for queue in consumer.task_consumer.queues)

    def base(self, names):
        """Of the queue ``names`` consumed, those that are not a database's own."""
        return set(names) - self.consumed

    def follow(self, consumer, served):
        """Consume the queues of the ``served`` databases, and only those."""
        if not config.database_queues():
            return
        wanted = {app.broker_queue(queue, dbname) for queue in self.base_queues for dbname in served}
        for name in sorted(wanted - self.consumed):
            consumer.add_task_queue(name)
            _logger.info("celery_task: consuming %s", name)
        for name in sorted(self.consumed - wanted):
            consumer.cancel_task_queue(name)
            _logger.info("celery_task: no longer consuming %s (its database is no longer served)", name)
        self.consumed = wanted

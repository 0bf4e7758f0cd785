"""The queues a worker consumes: those it was started with, each served database's own, less the paused ones.

Each database's own queues: with ``celery_database_queues`` (by default when ``db_name`` is unset), the
worker consumes ``<queue>.<database>`` for every queue it was started with and every database it
serves, new ones included, and stops for dropped ones. The broker then hands a worker the queues in
turn (Redis polls them round robin; RabbitMQ feeds each consumer), so a backlog in one database does
not hold up a fresh task of another.

Paused queues: a queue a Celery manager paused (models/celery_queue.py) is not consumed until it
resumes. The background thread finds both (worker/background.py); the event loop, which owns the
consumer, follows them here.
"""

import logging

from .. import app, config

_logger = logging.getLogger(__name__)


class DatabaseQueues:
    """The queues this worker consumes beside those it was started with, and those it stopped for a pause."""

    def __init__(self):
        self.base_queues = None
        self.added = set()  # the databases' own queues this worker consumes
        self.stopped = set()  # queues it stopped consuming because they are paused

    def start(self, consumer):
        if self.base_queues is None:  # the -Q queues; a restart after an outage finds ours added
            self.base_queues = sorted(queue.name for queue in consumer.task_consumer.queues)

    def base(self, names):
        """The queues this worker serves, paused or not, but for the databases' own: what its role is made of."""
        return (set(names) | self.stopped) - self.added

    def follow(self, consumer, served, paused):
        """Consume the queues of the ``served`` databases and no ``paused`` one (broker queue names)."""
        wanted = set()
        if config.database_queues():
            wanted = {app.broker_queue(queue, dbname) for queue in self.base_queues for dbname in served}
        consumed = {queue.name for queue in consumer.task_consumer.queues}
        resumable = self.stopped & (wanted | set(self.base_queues))  # not a dropped database's queue
        for name in sorted(((wanted | resumable) - paused) - consumed):
            consumer.add_task_queue(name)
            _logger.info("celery_task: consuming %s", name)
        for name in sorted(consumed & paused):
            consumer.cancel_task_queue(name)
            _logger.info("celery_task: no longer consuming %s while it is paused", name)
        for name in sorted((self.added - wanted) & consumed):
            consumer.cancel_task_queue(name)
            _logger.info("celery_task: no longer consuming %s (its database is no longer served)", name)
        self.stopped = (resumable | (consumed & paused)) & paused
        self.added = wanted

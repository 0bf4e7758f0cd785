"""Transient PostgreSQL errors: run the whole transaction again, with jittered exponential backoff.

A concurrency conflict (serialization failure, deadlock, lock timeout) or a connection that is gone
(a kept one after a server restart or a terminated backend) says nothing about the task: running
its transaction again on a new connection is safe. A commit whose outcome was unknown and that did
happen is caught on the retry: the claim finds the task no longer runnable.
"""

import logging
import random
import time

import psycopg2
from psycopg2 import errors as pg_errors

from .. import config

_logger = logging.getLogger(__name__)

CONCURRENCY_ERRORS = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected, pg_errors.LockNotAvailable)
LOST_CODES = ("57P01", "57P02", "57P03")  # the server shut the session down, or is restarting


def is_transient(exc):
    """True for a concurrency conflict or a lost connection."""
    if isinstance(exc, (*CONCURRENCY_ERRORS, psycopg2.InterfaceError)):
        return True
    code = getattr(exc, "pgcode", None)
    return isinstance(exc, psycopg2.OperationalError) and (code is None or code[:2] == "08" or code in LOST_CODES)


def with_transient_retries(what, func):
    """Run ``func`` again on transient PostgreSQL errors, within ``celery_concurrency_retries``."""
    attempt = 0
    while True:
        try:
            return func()
        except psycopg2.Error as exc:
            if not is_transient(exc):
                raise
            # Read only when needed: parsing the options costs more than a whole claim.
            bound = config.addon_option("concurrency_retries")
            if attempt >= bound:
                raise
            delay = config.addon_option("concurrency_backoff") * (2**attempt) * random.uniform(0.5, 1.5)
            attempt += 1
            _logger.info("%s: %s, retry %d/%d in %.2fs", what, type(exc).__name__, attempt, bound, delay)
            time.sleep(delay)

"""Celery settings read from odoo.conf ``[options]``, each overridable by an environment variable.

``celery_<setting> = value`` in odoo.conf, or ``ODOO_CELERY_<SETTING>`` in the environment,
sets Celery's ``<setting>``; values are parsed as Python/JSON literals when they look like one.
A few of our own options (``enable_celery_task``, relay and retry knobs) are read the same way.
"""

import ast
import functools
import os

from odoo.tools import config as odoo_config

ENV_PREFIX = "ODOO_CELERY_"
CONF_PREFIX = "celery_"

ALIASES = {
    "backend_url": "result_backend",
    "default_queue": "task_default_queue",
}

ADDON_OPTIONS = {
    "relay_interval": 5.0,
    "relay_delay": 10.0,
    "relay_resend_after": 60.0,
    "concurrency_retries": 5,
    "concurrency_backoff": 0.1,
    "task_limits": {},
    "database_scan_interval": 5.0,
    "registries_per_process": 8,
    "live_interval": 0.5,
    "notice_interval": 2.0,
    "host_timeout": 20.0,
    "schedule_horizon": 60.0,
    "schedule_interval": 1.0,
    "metrics_address": "0.0.0.0",
    "metrics_cache_seconds": 5.0,
}

# Options whose default is None: read as they are, not converted to the default's type.
OPTIONAL_ADDON_OPTIONS = {"database_queues": None, "metrics_port": None}

DEFAULTS = {
    "broker_url": "redis://127.0.0.1:6379/0",
    # No result backend unless one is configured: the task record holds the state and the result,
    # and a backend costs every task a read and two writes (set it for ``AsyncResult.get()``).
    "result_backend": None,
    "task_default_queue": "celery",
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "event_serializer": "json",
    "result_accept_content": ["json"],
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    # The task record says "started"; a STARTED write to the result backend before the body
    # would make a down backend stop the task from running at all.
    "task_track_started": False,
    "worker_prefetch_multiplier": 1,
    # Celery's default: no task events until something watches. Flower broadcasts enable_events
    # every 5 s while it runs; set it True to have every worker send them from the start.
    "worker_send_task_events": False,
    # A task-sent event is a second publish per call; Flower lists tasks from task-received on.
    "task_send_sent_event": False,
    "broker_connection_retry_on_startup": True,
    "result_extended": True,
    # A publish that cannot reach the broker fails at once: the task stays in the outbox and the
    # relay publishes it later, instead of the caller waiting on connection retries. A broker that
    # went silent (a host cut from it) fails a command after socket_timeout instead of holding it
    # forever: kombu's Redis transport has no timeout of its own, and an acknowledgement waited in
    # the worker's event loop for the whole cut.
    "broker_transport_options": {
        "max_retries": 0,
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
    },
    # RabbitMQ: queues that order their messages by priority (app.broker_priority). A queue an
    # earlier version declared without it must be deleted once (RabbitMQ refuses to declare it
    # again with other arguments), or set celery_task_queue_max_priority = None to keep it unordered.
    "task_queue_max_priority": 9,
    # RabbitMQ: a worker host that died is found within two heartbeats, and the messages it had taken
    # go back to their queues (Celery's default is 120 s).
    "broker_heartbeat": 10,
    "beat_scheduler": "odoo.addons.celery_task.beat_scheduler:DatabaseScheduler",
}


def parse_value(raw):
    """Turn an ini/env string into the Python value Celery expects."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null", ""):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _raw_options():
    """Every ``celery_*`` key from odoo.conf, then from the environment (which wins)."""
    found = {}
    for key, value in odoo_config.options.items():
        if key.startswith(CONF_PREFIX) and value is not None:
            found[key[len(CONF_PREFIX) :]] = value
    for key, value in os.environ.items():
        if key.startswith(ENV_PREFIX):
            found[key[len(ENV_PREFIX) :].lower()] = value
    return {ALIASES.get(key, key): parse_value(value) for key, value in found.items()}


def celery_settings():
    """The Celery configuration: our defaults, then odoo.conf, then the environment."""
    settings = dict(DEFAULTS)
    for key, value in _raw_options().items():
        if key in ADDON_OPTIONS or key in OPTIONAL_ADDON_OPTIONS:
            continue
        default = DEFAULTS.get(key)
        settings[key] = {**default, **value} if isinstance(default, dict) and isinstance(value, dict) else value
    return settings


def addon_option(name):
    """One of this addon's own knobs (relay, concurrency retries)."""
    if name in OPTIONAL_ADDON_OPTIONS:
        return _raw_options().get(name, OPTIONAL_ADDON_OPTIONS[name])
    value = _raw_options().get(name, ADDON_OPTIONS[name])
    return type(ADDON_OPTIONS[name])(value)


@functools.cache
def database_queues():
    """Whether each database's tasks go to a queue of their own (``<queue>.<database>``).

    ``celery_database_queues``; by default on when ``db_name`` is unset (every database of the
    server is served): a backlog in one database then never holds up another's tasks.
    """
    value = addon_option("database_queues")
    if value is None:
        return not (odoo_config.get("db_name") or None)
    return bool(value)


@functools.cache
def schedule_horizon():
    """``celery_schedule_horizon``: a task due later than this many seconds waits in PostgreSQL, not on the broker."""
    return addon_option("schedule_horizon")


@functools.cache
def configured_limit_sizes():
    """``celery_task_limits`` (``{"geocoding": 2}``): sizes of concurrency limits, checked once per process."""
    sizes = addon_option("task_limits")
    for name, size in sizes.items():
        if type(size) is not int or size < 1:
            raise ValueError(f"celery_task_limits: the size of limit {name!r} is {size!r}, not a number at least 1")
    return sizes


def async_enabled():
    """``enable_celery_task`` (env ``ODOO_ENABLE_CELERY_TASK``); off means decorated calls run inline."""
    raw = os.environ.get("ODOO_ENABLE_CELERY_TASK", odoo_config.get("enable_celery_task", False))
    return bool(parse_value(raw))

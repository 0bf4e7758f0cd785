"""Caller side: write the task record in the caller's transaction, publish after it commits.

The message carries only ``[database, record id]`` under the record's uuid; the method, records,
arguments and context stay in PostgreSQL, so a message can only run what a committed
transaction asked for. The publisher thread sends it (see publisher.py); records the broker did
not take are published again by the relay.
"""

import contextlib
import datetime
import uuid

import psycopg2.errors
from celery.result import AsyncResult

from . import compat, config, serialization, task_record, task_specs, tracing
from .app import celery_app
from .publisher import publisher

PENDING_KEY = "celery_task.outbox"
UNIQUE_ATTEMPTS = 3


def publish_after_commit(env, message):
    """Hand ``message`` to the publisher once ``env``'s transaction commits; dropped on rollback."""
    cr = env.cr
    pending = cr.postcommit.data.get(PENDING_KEY)
    if pending is None:
        pending = cr.postcommit.data[PENDING_KEY] = []
        cr.postcommit.add(lambda: publisher.submit(pending))
    pending.append(message)


def _schedule(spec, options, now):
    """The call's eta and expiry, naive UTC: its own options over its decorator's. ``now`` to the microsecond:
    a countdown from a ``now`` cut to the second started the task up to a second early."""
    if options.countdown is not None:
        eta = now + datetime.timedelta(seconds=options.countdown)
    elif options.eta is not None:
        eta = options.eta
    elif spec.countdown:
        eta = now + datetime.timedelta(seconds=spec.countdown)
    else:
        eta = spec.eta and task_specs.as_utc(spec.eta)
    expires = options.expires if options.expires is not None else spec.expires
    if isinstance(expires, datetime.datetime):
        expires = task_specs.as_utc(expires)
    elif expires is not None:
        expires = now + datetime.timedelta(seconds=expires)
    return eta, expires


def enqueue(spec, records, args, kwargs, options=task_specs.NO_OPTIONS):
    """Write the task record in the caller's transaction; publish it once that commits (or, due later than
    the horizon, once it falls due). ``options``: the call's own (task_specs.CallOptions).

    A unique task equal to one still open is not written: the open one's AsyncResult is returned.
    """
    spec.bind(records, args, kwargs)
    unique = spec.unique if options.unique is None else options.unique
    if unique:
        return _enqueue_unique(spec, records, args, kwargs, options, unique)
    return _insert(task_record.INSERT_TASK, spec, records, args, kwargs, options, {})[0]


def _enqueue_unique(spec, records, args, kwargs, options, unique):
    cr = records.env.cr
    payload = _payload(spec, args, kwargs)
    key = spec.identity_key(records, args, kwargs, spec.dbname or cr.dbname, payload, unique)
    extra = {"identity_key": key, "unique_running": spec.unique_running}
    for _attempt in range(UNIQUE_ATTEMPTS):
        try:
            with cr.savepoint(flush=False):
                statement = task_record.INSERT_UNIQUE_TASK
                return _insert(statement, spec, records, args, kwargs, options, extra, log=False)[0]
        except EqualTaskOpen:
            pass
        except psycopg2.errors.SerializationFailure:
            pass  # an equal task committed after this transaction's snapshot: look on a connection of its own
        found = _open_task(cr, key)
        if found is not None:
            return AsyncResult(found["uuid"], app=celery_app, task_name=found["name"])
    raise RuntimeError(f"{spec.task_name}: an equal task kept opening and closing; {UNIQUE_ATTEMPTS} attempts")


class EqualTaskOpen(Exception):
    """The unique insert wrote nothing: an equal task is open."""


def _open_task(cr, key):
    cr.execute(task_record.OPEN_TASK, {"key": key})
    row = cr.dictfetchone()
    if row is not None:
        return row
    with contextlib.closing(compat.open_autocommit(cr.dbname)) as connection, connection.cursor() as fresh:
        fresh.execute(task_record.OPEN_TASK, {"key": key})
        found = fresh.fetchone()
    return None if found is None else {"id": found[0], "uuid": found[1], "name": found[2]}


def _payload(spec, args, kwargs):
    return serialization.dumps({"args": list(args), "kwargs": kwargs}, path=f"{spec.task_name} arguments")


def enqueue_step(spec, records, args, kwargs, workflow, options=task_specs.NO_OPTIONS):
    """A workflow's step, checked whole by ``canvas``: published after the commit only if it can start.

    ``workflow``: whether it ``waits``, its ``workflow_id``, ``workflow_root_id`` and ``receives``.
    Returns its AsyncResult and its record id.
    """
    return _insert(task_record.INSERT_WORKFLOW_TASK, spec, records, args, kwargs, options, workflow)


def _insert(statement, spec, records, args, kwargs, options, extra, log=True):
    env = records.env
    cr = env.cr
    payload = _payload(spec, args, kwargs)
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)  # to the microsecond: see _schedule
    eta, expires_at = _schedule(spec, options, now)
    task_uuid = str(uuid.uuid4())
    cr.execute(
        statement,
        {
            "uuid": task_uuid,
            "name": spec.task_name,
            "dbname": spec.dbname or cr.dbname,
            "uid": env.uid,
            "model": records._name,
            "method": spec.method,
            "ids": serialization.dumps(list(records._ids)),
            "args": payload,
            "context": serialization.dumps(serialization.safe_context(env.context)),
            "queue": options.queue or spec.queue or celery_app.conf.task_default_queue,
            "priority": spec.priority if options.priority is None else options.priority,
            "eta": eta,
            "expires_at": expires_at,
            "max_retries": options.max_retries,
            "time_limit": options.time_limit,
            "soft_time_limit": options.soft_time_limit,
            "traceparent": tracing.current_traceparent(),
            "horizon": config.schedule_horizon(),
            "call_repr": task_specs.describe_call(records._name, records._ids, spec.method, args, kwargs),
            "now": now,
            "limit_name": spec.limit_name,
            **extra,
        },
        log_exceptions=log,
    )
    row = cr.dictfetchone()
    if row is None:
        raise EqualTaskOpen()
    if row["state"] == task_record.PENDING:
        publish_after_commit(env, task_record.TaskMessage.from_row(cr.dbname, row))
    return AsyncResult(task_uuid, app=celery_app, task_name=spec.task_name), row["id"]

"""Worker side: claim the task record, rebuild the caller's environment, run, commit, record.

Exactly once: a session advisory lock on the record (released when the process dies) keeps two
workers from running one task; the method's effects and the record's final state are committed
in one transaction, so a task whose worker died mid-run runs again and its effects exist once.
"""

import contextlib
import contextvars
import functools
import json
import logging
import random
import time
import traceback

import psycopg2
import psycopg2.extras
from celery.exceptions import Ignore, Reject, Retry
from psycopg2 import errors as pg_errors

from odoo import api
from odoo.modules.registry import Registry

from . import (
    config,
    main_process_db,
    notifications,
    prepared_statements,
    serialization,
    task_connections,
    task_specs,
    task_start,
)
from .exceptions import (
    BadArguments,
    InactiveUser,
    MalformedMessage,
    NotATask,
    RecordsGone,
    RetryableError,
    UnknownTask,
    UnservedDatabase,
)

_logger = logging.getLogger(__name__)

LOCK_CLASS = 0x0CE1  # advisory-lock namespace: (LOCK_CLASS, task record id)
CONCURRENCY_ERRORS = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected, pg_errors.LockNotAvailable)
LOST_CODES = ("57P01", "57P02", "57P03")  # the server shut the session down, or is restarting
NOW_UTC = "(now() AT TIME ZONE 'UTC')"

_progress_target = contextvars.ContextVar("celery_task_progress_target", default=None)

# One round trip: take the task's session lock and, only when it was free, claim the record and
# read what its start needs ({{start}}: task_start.claim_columns). Read committed (autocommit): a
# concurrent write to the row (the caller marking it sent) is waited for and re-read, not turned
# into a serialization failure.
LOCK_AND_CLAIM = f"""
    WITH lock AS MATERIALIZED (
        SELECT pg_try_advisory_lock(%(lock_class)s, %(id)s) AS locked,
               -- the previous task's lock, kept until now (see claimed()); re-entrant, so the order is free
               (SELECT pg_advisory_unlock(%(lock_class)s, %(release)s) WHERE %(release)s IS NOT NULL) AS released
    ),
    found AS (SELECT uuid, name, state FROM celery_task WHERE id = %(id)s),
    claimed AS (
        UPDATE celery_task
           SET state = 'started', attempts = attempts + 1, started_at = {NOW_UTC},
               sent_at = COALESCE(sent_at, {NOW_UTC}), worker_host = %(host)s, write_date = {NOW_UTC}
         WHERE id = %(id)s AND uuid = %(uuid)s AND name = %(name)s
           AND state IN ('pending', 'retry', 'started') AND (SELECT locked FROM lock)
     RETURNING id, uuid, name, dbname, user_id, model_name, method_name, record_ids, args, context,
               call_repr, queue, attempts,
               (SELECT login FROM res_users WHERE res_users.id = celery_task.user_id) AS login
    )
    SELECT (SELECT locked FROM lock) AS locked, found.uuid AS found_uuid, found.name AS found_name,
           found.state AS found_state, claimed.*, {{start}}
      FROM (SELECT 1) AS one LEFT JOIN found ON true LEFT JOIN claimed ON true
"""

FINISH_TASK = f"""
    UPDATE celery_task
       SET state = %(state)s, done_at = {NOW_UTC}, write_date = {NOW_UTC}, result = %(result)s,
           exc_type = %(exc_type)s, exc_message = %(exc_message)s, traceback = %(traceback)s
     WHERE id = %(id)s
"""

MIRROR_TASK = f"""
    INSERT INTO celery_task (
        uuid, name, dbname, user_id, model_name, method_name, record_ids, args, context, call_repr,
        queue, state, attempts, started_at, done_at, result, create_uid, create_date, write_uid, write_date
    ) VALUES (
        %(uuid)s, %(name)s, %(dbname)s, %(user_id)s, %(model_name)s, %(method_name)s, %(record_ids)s,
        %(args)s, %(context)s, %(call_repr)s, %(queue)s, 'done', %(attempts)s, {NOW_UTC}, {NOW_UTC},
        %(result)s, %(user_id)s, {NOW_UTC}, %(user_id)s, {NOW_UTC}
    )
"""

RETRY_TASK = f"""
    UPDATE celery_task
       SET state = 'retry', eta = {NOW_UTC} + make_interval(secs => %(countdown)s), sent_at = {NOW_UTC},
           write_date = {NOW_UTC}, exc_type = %(exc_type)s, exc_message = %(exc_message)s,
           traceback = %(traceback)s
     WHERE id = %(id)s
"""

# A task cancelled after its claim ran, but none of it commits: this updates no row.
FINISH_STARTED = FINISH_TASK.replace("WHERE id = %(id)s", "WHERE id = %(id)s AND state = 'started'")
FAIL_UNFINISHED = FINISH_TASK.replace("WHERE id = %(id)s", "WHERE id = %(id)s AND state NOT IN ('done', 'cancelled')")
FAIL_UNFINISHED_UUID = FAIL_UNFINISHED.replace("WHERE id = %(id)s", "WHERE id = %(id)s AND uuid = %(uuid)s")

UPSERT_PROGRESS = f"""
    INSERT INTO celery_task_progress (task_id, state, current, total, message, meta,
                                      create_date, write_date)
    VALUES (%(id)s, %(state)s, %(current)s, %(total)s, %(message)s, %(meta)s, {NOW_UTC}, {NOW_UTC})
    ON CONFLICT (task_id) DO UPDATE
       SET state = EXCLUDED.state, current = EXCLUDED.current, total = EXCLUDED.total,
           message = EXCLUDED.message, meta = EXCLUDED.meta, write_date = EXCLUDED.write_date
"""


def run(task, spec, args, kwargs):
    """The body of every decorated task."""
    dbname, record_id = parse_message(task, args, kwargs)
    try:
        registry = served_registry(dbname, record_id)
    except Reject as rejection:
        record_outcome_outside_task(dbname, record_id, rejection.reason, task_uuid=task.request.id)
        raise
    with claimed(registry, task, spec.model, record_id) as row:
        if row is None:
            raise Ignore()
        return execute(registry, task, spec, row)


def parse_message(task, args, kwargs):
    """Accept only what ``outbox.publish`` sends: ``args=[database, record id]``, no kwargs."""
    request_id = task.request.id
    shape_ok = (
        isinstance(args, (list, tuple))
        and len(args) == 2
        and isinstance(args[0], str)
        and isinstance(args[1], int)
        and not isinstance(args[1], bool)
        and not kwargs
        and isinstance(request_id, str)
    )
    if not shape_ok:
        error = MalformedMessage(
            f"{task.name}[{request_id}]: expected args [database, task record id] and no kwargs, "
            f"got args={args!r:.200} kwargs={kwargs!r:.200}; message rejected, nothing ran"
        )
        _logger.error("%s", error)
        raise Reject(error, requeue=False)
    return args[0], args[1]


def served_registry(dbname, record_id):
    """The loaded registry of ``dbname``, or a rejection that says this worker does not serve it.

    Changes signaled by other processes are picked up at the start of the task's transaction.
    """
    served = config.served_databases()
    if dbname in served:
        return Registry(dbname)
    error = UnservedDatabase(
        f"task record {record_id} needs database {dbname!r}, which this worker does not serve "
        f"(it serves {', '.join(served) or 'none'}: set db_name); nothing ran"
    )
    _logger.error("%s", error)
    raise Reject(error, requeue=False)


def is_transient(exc):
    """A concurrency conflict, or a connection that is gone (a kept one after a server restart or a
    terminated backend): running the whole transaction again on a new connection is safe."""
    if isinstance(exc, (*CONCURRENCY_ERRORS, psycopg2.InterfaceError)):
        return True
    code = getattr(exc, "pgcode", None)
    return isinstance(exc, psycopg2.OperationalError) and (code is None or code[:2] == "08" or code in LOST_CODES)


def with_transient_retries(what, func):
    """Run ``func`` again on transient PostgreSQL errors, with jittered exponential backoff."""
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


@contextlib.contextmanager
def claimed(registry, task, model_name, record_id):
    """Lock and claim the record; yields its row, or None when there is nothing to run."""
    dbname = registry.db_name
    row = with_transient_retries(task.name, lambda: _claim(registry, task, model_name, record_id))
    if row is None:
        yield None
        return
    connection = task_connections.lock_connection(dbname)
    token = _progress_target.set((connection, record_id))
    try:
        yield row
    except BaseException:
        _unlock(dbname, record_id)  # a retry or a requeue may publish it again at once
        raise
    else:
        # Done, and nothing publishes a done task again: the lock can wait for this process's next claim.
        task_connections.release_with_next_claim(dbname, record_id)
    finally:
        _progress_target.reset(token)


@functools.cache
def _lock_and_claim(start_columns):
    return LOCK_AND_CLAIM.format(start=start_columns)


def _claim(registry, task, model_name, record_id):
    dbname = registry.db_name
    connection = task_connections.lock_connection(dbname)
    query = _lock_and_claim(task_start.claim_columns(registry, model_name))
    values = {
        "lock_class": LOCK_CLASS,
        "id": record_id,
        "model": model_name,
        "uuid": task.request.id,
        "name": task.name,
        "host": task.request.hostname,
        "release": task_connections.take_release(dbname),
    }
    try:
        with connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cr:
            prepared_statements.execute(connection, cr, query, values)
            row = cr.fetchone()
    except BaseException:
        task_connections.forget_lock_connection(dbname)  # whatever the statement locked is released
        raise
    if not row["locked"]:
        _logger.info(
            "%s[%s] is locked by another worker, which runs it or has just run it; duplicate skipped",
            task.name,
            task.request.id,
        )
        return None
    if row["id"] is not None:
        return row
    _unlock(dbname, record_id)
    if row["found_uuid"] is None:
        error = UnknownTask(
            f"{task.name}[{task.request.id}]: no task record {record_id} in database {dbname}; "
            "message rejected, nothing ran"
        )
        _logger.error("%s", error)
        raise Reject(error, requeue=False)
    if (row["found_uuid"], row["found_name"]) != (task.request.id, task.name):
        error = MalformedMessage(
            f"{task.name}[{task.request.id}] does not match task record {record_id} "
            f"({row['found_name']}[{row['found_uuid']}]); message rejected, nothing ran"
        )
        _logger.error("%s", error)
        raise Reject(error, requeue=False)
    _logger.info(
        "%s[%s] is already %s; message acknowledged and skipped", task.name, task.request.id, row["found_state"]
    )
    return None


def _unlock(dbname, record_id):
    try:
        with task_connections.lock_connection(dbname).cursor() as cr:
            cr.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_CLASS, record_id])
    except psycopg2.Error:
        task_connections.forget_lock_connection(dbname)


def execute(registry, task, spec, row):
    """Run the claimed task until it is done, failed, or handed back for a retry."""
    try:
        target = registry if row["dbname"] == registry.db_name else served_registry(row["dbname"], row["id"])
    except Reject as rejection:
        _record_outcome(registry, row["id"], "failed", exc=rejection.reason)
        raise
    try:
        result = with_transient_retries(task.name, lambda: _run_once(registry, target, task, spec, row))
    except (Ignore, Reject, Retry):
        raise
    except Exception as exc:
        if _wants_retry(spec, exc, row):
            countdown = spec.retry_backoff * (2 ** (row["attempts"] - 1))
            _record_outcome(registry, row["id"], "retry", exc=exc, countdown=countdown)
            raise task.retry(exc=exc, countdown=countdown, max_retries=spec.max_retries) from exc
        _record_outcome(registry, row["id"], "failed", exc=exc)
        _logger.error("%s[%s] failed: %s: %s", task.name, row["uuid"], type(exc).__name__, exc)
        raise
    if target is not registry:
        _record_outcome(registry, row["id"], "done", result=result)
    return json.loads(result) if result is not None else None


def _wants_retry(spec, exc, row):
    retryable = isinstance(exc, RetryableError) or (spec.retry_for and isinstance(exc, spec.retry_for))
    return retryable and row["attempts"] <= spec.max_retries


def _run_once(origin, target, task, spec, row):
    cross_database = target is not origin
    with task_connections.task_transaction(target) as cr:
        if cross_database:
            registry, start = target.check_signaling(cr), None
            if _already_mirrored(cr, row["uuid"]):
                return None
        else:
            start = task_start.begin(cr, target, row)
            registry = start.registry
        with registry.manage_changes():
            records, args, kwargs = rebuild_call(cr, task, spec, row, start)
            token = task_specs.run_next_call_inline(spec)
            try:
                value = getattr(records, row["method_name"])(*args, **kwargs)
            finally:
                task_specs.reset_inline(token)
            records.env.flush_all()  # the method's own conflicts surface here, where they are retried
            result = _result_json(value)
            if cross_database:
                cr.execute(MIRROR_TASK, {**row, "user_id": records.env.uid, "dbname": cr.dbname, "result": result})
            else:
                prepared_statements.execute(cr, cr, FINISH_STARTED, _outcome_values(row["id"], "done", result=result))
                if not cr.rowcount:
                    _logger.info("%s[%s] was cancelled while it ran; nothing it did commits", task.name, row["uuid"])
                    raise Ignore()
                if start.user_active:  # inactive users, like the superuser, have no web client to tell
                    notifications.notify_outcome(cr, row["id"])
            return result


def _already_mirrored(cr, task_uuid):
    cr.execute("SELECT 1 FROM celery_task WHERE uuid = %s AND state = 'done'", [task_uuid])
    return bool(cr.fetchone())


def rebuild_call(cr, task, spec, row, start):
    """The caller's environment, records and arguments, or a precise error when they are gone.

    ``start`` is what ``task_start.begin`` found, or None in another database than the record's.
    """
    context = json.loads(row["context"] or "{}")
    env = api.Environment(cr, api.SUPERUSER_ID, {})
    uid = _resolve_user(env, row, start)
    env = api.Environment(cr, uid, serialization.from_json_safe(context, env))
    model_name, method = row["model_name"], row["method_name"]
    if model_name not in env:
        raise UnknownTask(f"{row['name']}: model {model_name!r} does not exist in database {cr.dbname}; nothing ran")
    model_class = type(env[model_name])
    if not callable(getattr(model_class, method, None)):
        raise UnknownTask(f"{row['name']}: {model_name} has no method {method!r}; nothing ran")
    if not task_specs.is_decorated(model_class, method) or spec.method != method:
        raise NotATask(f"{model_name}.{method} is not decorated with @celeryTask as {row['name']}; nothing ran")
    ids = json.loads(row["record_ids"])
    records = env[model_name].browse(ids)
    existing = start.existing_ids if start and start.existing_ids is not None else records.exists().ids
    missing = sorted(set(ids) - set(existing))
    if missing:
        raise RecordsGone(f"{model_name}{tuple(missing)!r} no longer exist in {cr.dbname}; {row['name']} did not run")
    payload = serialization.loads(row["args"], env)
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    try:
        spec.bind(records, args, kwargs)
    except TypeError as exc:
        raise BadArguments(str(exc)) from None
    records = records.with_context(celeryTask=task)
    return (records.sudo() if spec.sudo else records), args, kwargs


def _resolve_user(env, row, start):
    """The id to run as: the caller's user, or in another database the user with the caller's login."""
    if start is not None:
        user_id, user_active = row["user_id"], start.user_active
    else:
        user = env["res.users"].with_context(active_test=False).search([("login", "=", row["login"])], limit=1)
        user_id, user_active = user.id, user.active if user else None
    if user_active is None:
        raise InactiveUser(f"user {row['login']!r} (#{row['user_id']}) does not exist in {env.cr.dbname}; nothing ran")
    if not user_active and user_id != api.SUPERUSER_ID:
        raise InactiveUser(f"user {row['login']!r} (#{user_id}) is deactivated in {env.cr.dbname}; nothing ran")
    return user_id


def _result_json(value):
    try:
        return serialization.dumps(value, path="result")
    except TypeError:
        return json.dumps(repr(value))


def _outcome_values(record_id, state, result=None, exc=None):
    return {
        "id": record_id,
        "state": state,
        "result": result,
        "exc_type": f"{type(exc).__module__}.{type(exc).__qualname__}" if exc else None,
        "exc_message": str(exc) if exc else None,
        "traceback": "".join(traceback.format_exception(exc)) if exc else None,
    }


def _record_outcome(registry, record_id, state, result=None, exc=None, countdown=0):
    """Write a final (or retry) state from a fresh transaction, after the method's was rolled back."""
    values = {**_outcome_values(record_id, state, result=result, exc=exc), "countdown": countdown}

    def write():
        with registry.cursor() as cr:
            cr.execute(RETRY_TASK if state == "retry" else FINISH_TASK, values)
            if state != "retry":
                notifications.notify_outcome(cr, record_id)

    with_transient_retries(f"record {state} of task {record_id}", write)


def record_outcome_outside_task(dbname, record_id, exc, task_uuid=None):
    """Mark a task failed on a short-lived connection.

    Used from the worker's main process (hard time limit, unknown task name), and for a database
    the worker does not serve, where only the record whose uuid the message names is touched.
    """
    query, values = FAIL_UNFINISHED, _outcome_values(record_id, "failed", exc=exc)
    if task_uuid is not None:
        query = FAIL_UNFINISHED_UUID
        values["uuid"] = task_uuid
    elif dbname not in config.served_databases():
        return
    try:
        with main_process_db.cursor(dbname) as cr:
            cr.execute(query, values)
    except psycopg2.Error as error:
        _logger.warning("celery_task: could not record the failure of task %s in %s: %s", record_id, dbname, error)


def record_progress(state, meta):
    """Mirror ``update_state`` into the task's progress row, visible while the task still runs."""
    target = _progress_target.get()
    if target is None:
        return
    connection, record_id = target
    meta = meta if isinstance(meta, dict) else {}
    values = {
        "id": record_id,
        "state": state,
        "current": meta.get("current"),
        "total": meta.get("total"),
        "message": meta.get("message") or meta.get("status"),
        "meta": json.dumps(serialization.safe_context(meta)),
    }
    try:
        with connection.cursor() as cr:
            cr.execute(UPSERT_PROGRESS, values)
    except Exception:
        _logger.warning("celery_task: could not record progress of task %s", record_id, exc_info=True)

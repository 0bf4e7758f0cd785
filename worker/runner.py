"""The body of every decorated task: check the message, claim the record, rebuild the call, run it.

Exactly once: the claim takes the record's session advisory lock (released when the process dies),
so two workers never run one task; the method's effects and the record's final state commit in one
transaction, so a task whose worker died mid-run runs again and its effects exist once.
"""

import json
import logging

from celery.exceptions import Ignore, Reject, Retry

from odoo import api
from odoo.modules.registry import Registry

from .. import compat, config, databases, serialization, task_record, task_specs
from ..exceptions import (
    BadArguments,
    InactiveUser,
    MalformedMessage,
    NotATask,
    RecordsGone,
    RetryableError,
    UnknownTask,
    UnservedDatabase,
)
from . import claim, connections, metrics, outcome, retries, workflow

_logger = logging.getLogger(__name__)


def run(task, spec):
    """Run the task record the current message names, once."""
    dbname, record_id = checked_target(task)
    try:
        registry = served_registry(dbname, record_id)
    except Reject as rejection:
        metrics.REJECTED.labels("unserved_database").inc()
        outcome.record_failure_outside_task(dbname, record_id, rejection.reason, task_uuid=task.request.id)
        raise
    with claim.claimed(registry, task, spec, record_id) as row:
        if row is None:
            raise Ignore()
        metrics.STARTED.labels(task.name).inc()
        metrics.START_DELAY.labels(task.name).observe(max(0.0, (row["start_now"] - row["due_at"]).total_seconds()))
        with metrics.RUNTIME.labels(task.name).time():
            return execute(registry, task, spec, row)


def checked_target(task):
    """``(database, record id)`` of the message being run, or a rejection: then nothing runs."""
    request = task.request
    try:
        if not isinstance(request.id, str):
            raise MalformedMessage(f"expected a task id string, got {request.id!r:.80}")
        return task_record.message_target(request.args, request.kwargs)
    except MalformedMessage as exc:
        metrics.REJECTED.labels("malformed").inc()
        error = MalformedMessage(f"{task.name}[{request.id}]: {exc}; message rejected, nothing ran")
        _logger.error("%s", error)
        raise Reject(error, requeue=False) from None


def served_registry(dbname, record_id):
    """The loaded registry of ``dbname``, or a rejection that says this worker does not serve it.

    Changes signaled by other processes are picked up at the start of the task's transaction.
    """
    if databases.is_served(dbname):
        return Registry(dbname)
    if databases.discovering():
        why = "which does not exist on this server" if not databases.exists(dbname) else "which has no celery_task"
        error = UnservedDatabase(f"task record {record_id} needs database {dbname!r}, {why}; nothing ran")
    else:
        error = UnservedDatabase(
            f"task record {record_id} needs database {dbname!r}, which this worker does not serve "
            f"(it serves {', '.join(databases.configured())}: set db_name); nothing ran"
        )
    _logger.error("%s", error)
    raise Reject(error, requeue=False)


def execute(registry, task, spec, row):
    """Run the claimed task until it is done, failed, or handed back for a retry."""
    try:
        target = registry if row["dbname"] == registry.db_name else served_registry(row["dbname"], row["id"])
    except Reject as rejection:
        outcome.record_outcome(registry, row, task_record.FAILED, exc=rejection.reason)
        raise
    try:
        result = retries.with_transient_retries(task.name, lambda: _run_once(registry, target, task, spec, row))
    except (Ignore, Reject, Retry):
        raise
    except Exception as exc:
        if _wants_retry(spec, exc, row):
            countdown = spec.retry_backoff * (2 ** (row["attempts"] - 1))
            published = countdown <= config.schedule_horizon()  # else it waits in PostgreSQL until due
            if not outcome.record_outcome(
                registry, row, task_record.RETRY, exc=exc, countdown=countdown, published=published
            ):
                raise Ignore() from exc
            metrics.RETRIED.labels(task.name).inc()
            if not published:
                _logger.info("%s[%s] retries in %.0f s, published when due", task.name, row["uuid"], countdown)
                raise Ignore() from exc
            raise task.retry(exc=exc, countdown=countdown, max_retries=_retry_limit(spec, row)) from exc
        outcome.record_outcome(registry, row, task_record.FAILED, exc=exc)
        metrics.FAILED.labels(task.name).inc()
        _logger.error("%s[%s] failed: %s: %s", task.name, row["uuid"], type(exc).__name__, exc)
        raise
    if target is not registry:
        outcome.record_outcome(registry, row, task_record.DONE, result=result)
    metrics.SUCCEEDED.labels(task.name).inc()
    return json.loads(result) if result is not None else None


def _retry_limit(spec, row):
    """The call's own max_retries, else its decorator's."""
    return spec.max_retries if row["max_retries"] is None else row["max_retries"]


def _wants_retry(spec, exc, row):
    retryable = isinstance(exc, RetryableError) or (spec.retry_for and isinstance(exc, spec.retry_for))
    return retryable and row["attempts"] <= _retry_limit(spec, row)


def _run_once(origin, target, task, spec, row):
    """One attempt in one transaction: the method's effects and the task's outcome commit together."""
    cross_database = target is not origin
    lock_connection = connections.lock_connection(origin.db_name)
    with connections.task_transaction(target) as cr:
        if cross_database:
            registry, start = compat.check_signaling(target, cr), None
            cr.execute(task_record.MIRRORED, {"uuid": row["uuid"]})
            if cr.fetchone():
                return None
        else:
            start = claim.begin(cr, target, row)
            registry = start.registry
        with compat.manage_changes(registry):
            records, args, kwargs = rebuild_call(cr, task, spec, row, start)
            token = task_specs.run_next_call_inline(spec)
            try:
                value = getattr(records, row["method_name"])(*args, **kwargs)
            finally:
                task_specs.reset_inline(token)
            records.env.flush_all()  # the method's own conflicts surface here, where they are retried
            result = _result_json(value)
            if cross_database:
                values = {**row, "user_id": records.env.uid, "dbname": cr.dbname, "result": result}
                cr.execute(task_record.MIRROR_TASK, values)
            else:
                waiting_successors = outcome.finish_done(cr, row, result)
                if waiting_successors is None:
                    why = outcome.no_longer_ours(lock_connection, row)
                    _logger.info("%s[%s] %s; nothing it did commits", task.name, row["uuid"], why)
                    raise Ignore()
                if waiting_successors:
                    workflow.release_successors(cr, row["id"], waiting_successors, lock_connection)
            return result


def rebuild_call(cr, task, spec, row, start):
    """The caller's environment, records and arguments, or a precise error when they are gone.

    ``start`` is what the claim read for this task, or None in another database than the record's.
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
    if row["receives"] in (task_record.RECEIVES_RESULT, task_record.RECEIVES_RESULTS):  # a plain call: NULL
        args = [*_received(cr, env, row), *args]
    try:
        spec.bind(records, args, kwargs)
    except TypeError as exc:
        raise BadArguments(str(exc)) from None
    records = records.with_context(celeryTask=task)
    return (records.sudo() if spec.sudo else records), args, kwargs


def _received(cr, env, row):
    """What a workflow's step receives first, from the records of the steps it waited for."""
    cr.execute(task_record.PREDECESSOR_RESULTS, {"id": row["id"]})
    results = [None if text is None else serialization.loads(text, env) for (text,) in cr.fetchall()]
    return [results] if row["receives"] == task_record.RECEIVES_RESULTS else results[:1]


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

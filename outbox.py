"""Caller side: write the task record in the caller's transaction, publish after it commits.

The message carries only ``[database, record id]`` under the record's uuid; the method, records,
arguments and context stay in PostgreSQL, so a message can only run what a committed
transaction asked for. Records the broker did not take are published again by the relay.
"""

import dataclasses
import datetime
import logging
import uuid

from celery.result import AsyncResult

from . import serialization, task_specs
from .app import celery_app

_logger = logging.getLogger(__name__)

PENDING_KEY = "celery_task.outbox"

INSERT_TASK = """
    INSERT INTO celery_task (
        uuid, name, dbname, user_id, model_name, method_name, record_ids, args, context,
        queue, priority, eta, expires_at, call_repr, state, attempts,
        create_uid, create_date, write_uid, write_date
    ) VALUES (
        %(uuid)s, %(name)s, %(dbname)s, %(uid)s, %(model)s, %(method)s, %(ids)s, %(args)s,
        %(context)s, %(queue)s, %(priority)s, %(eta)s, %(expires_at)s, %(call_repr)s,
        'pending', 0, %(uid)s, %(now)s, %(uid)s, %(now)s
    ) RETURNING id
"""

MARK_SENT = """
    UPDATE celery_task SET sent_at = (now() AT TIME ZONE 'UTC')
    WHERE id = ANY(%s) AND sent_at IS NULL AND state = 'pending'
"""


@dataclasses.dataclass
class Outgoing:
    """A message to publish: everything the broker needs, nothing that decides what runs."""

    task_name: str
    task_uuid: str
    dbname: str
    record_id: int
    queue: str
    call_repr: str
    eta: datetime.datetime | None = None
    expires_at: datetime.datetime | None = None
    priority: int | None = None

    @classmethod
    def from_row(cls, dbname, row):
        """The message for a ``celery_task`` row (a dict with its columns)."""
        return cls(
            task_name=row["name"],
            task_uuid=row["uuid"],
            dbname=dbname,
            record_id=row["id"],
            queue=row["queue"],
            call_repr=row["call_repr"],
            eta=row.get("eta"),
            expires_at=row.get("expires_at"),
            priority=row.get("priority"),
        )


def _utc(moment):
    return moment.replace(tzinfo=datetime.timezone.utc) if moment else None


def publish(item):
    """Send one message; False (and a log line) when the broker refuses, so the relay retries."""
    try:
        celery_app.send_task(
            item.task_name,
            args=[item.dbname, item.record_id],
            task_id=item.task_uuid,
            queue=item.queue,
            eta=_utc(item.eta),
            expires=_utc(item.expires_at),
            priority=item.priority,
            argsrepr=item.call_repr,
            kwargsrepr="{}",
            retry=False,
        )
    except Exception as exc:  # noqa: BLE001 - any broker failure leaves the task to the relay
        _logger.warning(
            "celery_task: broker refused %s[%s] (%s: %s); it stays in the outbox of %s and the relay will publish it",
            item.task_name,
            item.task_uuid,
            type(exc).__name__,
            exc,
            item.dbname,
        )
        return False
    return True


def publish_and_mark(registry, items):
    """Publish ``items`` and record which ones the broker took."""
    sent = [item.record_id for item in items if publish(item)]
    if not sent:
        return sent
    try:
        with registry.cursor() as cr:
            # Read committed: a row a worker already claimed is waited for and skipped (no longer
            # pending), instead of failing this update on a serialization error.
            cr.execute(
                f"SET TRANSACTION ISOLATION LEVEL READ COMMITTED; SET LOCAL synchronous_commit TO OFF; {MARK_SENT}",
                [sent],
            )
    except Exception:
        _logger.warning("celery_task: could not mark %s as sent", sent, exc_info=True)
    return sent


def publish_after_commit(env, item):
    """Queue ``item`` to be published once ``env``'s transaction commits; dropped on rollback."""
    cr = env.cr
    pending = cr.postcommit.data.get(PENDING_KEY)
    if pending is None:
        pending = cr.postcommit.data[PENDING_KEY] = []
        registry = env.registry
        cr.postcommit.add(lambda: publish_and_mark(registry, pending))
    pending.append(item)


def _schedule(spec, now):
    eta = spec.eta
    if spec.countdown:
        eta = now + datetime.timedelta(seconds=spec.countdown)
    expires = spec.expires
    if isinstance(expires, (int, float)):
        expires = now + datetime.timedelta(seconds=expires)
    return eta, expires


def enqueue(spec, records, args, kwargs):
    """Write the task record in the caller's transaction; publish it once that commits."""

    spec.bind(records, args, kwargs)
    env = records.env
    cr = env.cr
    payload = serialization.dumps({"args": list(args), "kwargs": kwargs}, path=f"{spec.task_name} arguments")
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)
    eta, expires_at = _schedule(spec, now)
    task_uuid = str(uuid.uuid4())
    queue = spec.queue or celery_app.conf.task_default_queue
    call_repr = task_specs.describe_call(records._name, records._ids, spec.method, args, kwargs)
    cr.execute(
        INSERT_TASK,
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
            "queue": queue,
            "priority": spec.priority,
            "eta": eta,
            "expires_at": expires_at,
            "call_repr": call_repr,
            "now": now,
        },
    )
    record_id = cr.fetchone()[0]
    publish_after_commit(
        env,
        Outgoing(
            task_name=spec.task_name,
            task_uuid=task_uuid,
            dbname=cr.dbname,
            record_id=record_id,
            queue=queue,
            call_repr=call_repr,
            eta=eta,
            expires_at=expires_at,
            priority=spec.priority,
        ),
    )
    return AsyncResult(task_uuid, app=celery_app, task_name=spec.task_name)

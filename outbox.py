"""Caller side: write the task record in the caller's transaction, publish after it commits.

The message carries only ``[database, record id]`` under the record's uuid; the method, records,
arguments and context stay in PostgreSQL, so a message can only run what a committed
transaction asked for. The publisher thread sends it (see publisher.py); records the broker did
not take are published again by the relay.
"""

import datetime
import uuid

from celery.result import AsyncResult

from . import serialization, task_specs
from .app import celery_app
from .publisher import Outgoing, publisher

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


def publish_after_commit(env, item):
    """Hand ``item`` to the publisher once ``env``'s transaction commits; dropped on rollback."""
    cr = env.cr
    pending = cr.postcommit.data.get(PENDING_KEY)
    if pending is None:
        pending = cr.postcommit.data[PENDING_KEY] = []
        cr.postcommit.add(lambda: publisher.submit(pending))
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

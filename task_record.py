"""The ``celery_task`` row's contract: its states, its lock, every statement on it, row <-> message.

Every process reads and writes task records only through what this module defines; the state
names below are the only spelling of a state in Python.

States::

    caller's transaction           worker (under the record's advisory lock)
    --------------------           ------------------------------------------
    INSERT -> pending --claim--> started --finish, with the method's effects--> done
    INSERT -> waiting --release, by the transaction that finishes the last step it waits for--> pending
                 ^                 |  |
                 |                 |  +--error, rolled back----------------------> failed
                 |     retry <-----+  (RetryableError / retry_for, within max_retries)
                 |       |
                 |       +--claim (its eta passed)--> started
                 |
    started --no free slot of its limit--> deferred --a slot freed (hand-off)--> pending
    started, retry --published again by the relay (its worker gone: its lock free; a retry past its eta)--> pending
    waiting, pending, deferred, retry, started --cancel (UI) or expiry (relay)--> cancelled
    failed, cancelled --requeue (UI), under a new uuid--> pending (waiting, if a step before it is not done)

A unique task holds ``open_key`` (its ``identity_key``) while it counts as open, under a unique
index: until its claim, or with ``unique_running`` until it finishes. A task with a limit holds
one of its limit's slots (``slot_key`` advisory locks) while its method runs.

A workflow's step waits for the steps linked before it (``celery_task_link``). When one of those
does not end done, the waiting steps after it are cancelled (``exc_type`` STEP_STOPPED); a requeue
of that step puts them back to waiting.

``done_at`` is set by every finished state (done, failed, cancelled) and cleared by a requeue:
the relay finds unfinished records by ``done_at IS NULL`` through a partial index.

HOT updates: the claim (``state``, ``attempts``, ``started_at``, ``sent_at``, ``worker_host``,
``write_date``) and the publisher's sent mark (``sent_at``) change no indexed column, and the
table's fill factor (80) leaves room in each page, so PostgreSQL updates those rows in place
without writing any index entry. Never index a column these two statements write, nor use one
in a partial index's condition.

The lock: a session advisory lock ``(LOCK_CLASS, record id)``, held by the worker that runs the
task from its claim until its outcome committed (or its process died). A claim only proceeds
when it took the lock, so two workers never run one task.

A message carries only ``[database, record id]`` under the record's uuid, in the task named by
the record; :func:`message_target` is the one check of that shape.
"""

import dataclasses
import datetime

from .exceptions import MalformedMessage

WAITING = "waiting"
SCHEDULED = "scheduled"
PENDING = "pending"
DEFERRED = "deferred"
STARTED = "started"
RETRY = "retry"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"

STATE_LABELS = [
    (WAITING, "Waiting for its workflow"),
    (SCHEDULED, "Scheduled"),
    (PENDING, "Pending"),
    (DEFERRED, "Waiting for a free slot"),
    (STARTED, "Started"),
    (RETRY, "Waiting to retry"),
    (DONE, "Done"),
    (FAILED, "Failed"),
    (CANCELLED, "Cancelled"),
]
FINISHED_STATES = (DONE, FAILED, CANCELLED)
REQUEUEABLE_STATES = (FAILED, CANCELLED)
CANCELLABLE_STATES = (WAITING, SCHEDULED, PENDING, DEFERRED, RETRY, STARTED)

#: What a workflow's step receives first: nothing more, the result before it, or a group's results.
RECEIVES_NOTHING = "nothing"
RECEIVES_RESULT = "result"
RECEIVES_RESULTS = "results"

#: ``exc_type`` of a waiting step cancelled because a step before it did not end done.
STEP_STOPPED = "celery_task.workflow.StepStopped"

#: Advisory-lock namespace: a task's lock is ``(LOCK_CLASS, record id)``.
LOCK_CLASS = 0x0CE1

#: A waiting step's release lock, a transaction advisory lock ``(RELEASE_LOCK_CLASS, record id)``
#: (see worker/workflow.py).
RELEASE_LOCK_CLASS = 0x0CE2

# A limit's slots and gate are session advisory locks on one 64-bit key each, a hash of the
# limit's name (see worker/limits.py): another key space than the two-part task locks.

#: The transaction's time as Odoo stores datetimes (UTC, without time zone).
NOW_UTC = "(now() AT TIME ZONE 'UTC')"

#: What a statement returns for the message of each task it makes ready: see :meth:`TaskMessage.from_row`.
MESSAGE_COLUMNS = (
    "id, uuid, name, queue, eta, expires_at, priority, call_repr, time_limit, soft_time_limit, traceparent"
)


def _scheduled_or_pending(eta):
    """The state of a task about to be ready to run: scheduled when its ``eta`` is further than ``%(horizon)s``
    seconds (``celery_schedule_horizon``), so that it waits in PostgreSQL until due, not on the broker."""
    return (
        f"CASE WHEN {eta} > (clock_timestamp() AT TIME ZONE 'UTC') + make_interval(secs => %(horizon)s)"
        " THEN 'scheduled' ELSE 'pending' END"
    )


SCHEDULED_OR_PENDING = _scheduled_or_pending("eta")

# -- caller side ------------------------------------------------------------------------------

# A task's inserts leave create_uid and write_uid empty: user_id says who asked. Each of those
# foreign keys costs the insert a check, planned anew in every transaction of a caller (Odoo's pool
# discards the session's plans whenever it lends a connection): 0.31 ms an insert with them, 0.13 without.

INSERT_TASK = f"""
    INSERT INTO celery_task (
        uuid, name, dbname, user_id, model_name, method_name, record_ids, args, context,
        queue, priority, eta, expires_at, call_repr, state, attempts, limit_name,
        max_retries, time_limit, soft_time_limit, traceparent, create_date, write_date
    ) VALUES (
        %(uuid)s, %(name)s, %(dbname)s, %(uid)s, %(model)s, %(method)s, %(ids)s, %(args)s,
        %(context)s, %(queue)s, %(priority)s, %(eta)s, %(expires_at)s, %(call_repr)s,
        {_scheduled_or_pending("%(eta)s::timestamp")}, 0, %(limit_name)s,
        %(max_retries)s, %(time_limit)s, %(soft_time_limit)s, %(traceparent)s, %(now)s, %(now)s
    ) RETURNING {MESSAGE_COLUMNS}, state
"""

# A unique task: nothing is inserted while an open task has the same key (the unique index on
# open_key). Inside a savepoint: under repeatable read, an equal task committed after this
# transaction's snapshot is a serialization failure, which the savepoint keeps from the caller.
INSERT_UNIQUE_TASK = f"""
    INSERT INTO celery_task (
        uuid, name, dbname, user_id, model_name, method_name, record_ids, args, context,
        queue, priority, eta, expires_at, call_repr, state, attempts, limit_name,
        max_retries, time_limit, soft_time_limit, traceparent, identity_key, open_key, unique_running,
        create_date, write_date
    ) VALUES (
        %(uuid)s, %(name)s, %(dbname)s, %(uid)s, %(model)s, %(method)s, %(ids)s, %(args)s,
        %(context)s, %(queue)s, %(priority)s, %(eta)s, %(expires_at)s, %(call_repr)s,
        {_scheduled_or_pending("%(eta)s::timestamp")}, 0, %(limit_name)s,
        %(max_retries)s, %(time_limit)s, %(soft_time_limit)s, %(traceparent)s,
        %(identity_key)s, %(identity_key)s, %(unique_running)s, %(now)s, %(now)s
    )
    ON CONFLICT (open_key) WHERE open_key IS NOT NULL DO NOTHING
    RETURNING {MESSAGE_COLUMNS}, state
"""

# The open task holding a unique key (read on a connection of its own when this one cannot see it).
OPEN_TASK = "SELECT id, uuid, name FROM celery_task WHERE open_key = %(key)s"

# A workflow's step: waiting for the steps before it, or ready as any call.
INSERT_WORKFLOW_TASK = f"""
    INSERT INTO celery_task (
        uuid, name, dbname, user_id, model_name, method_name, record_ids, args, context,
        queue, priority, eta, expires_at, call_repr, state, attempts, limit_name,
        max_retries, time_limit, soft_time_limit, traceparent, workflow_id, workflow_root_id, receives,
        create_date, write_date
    ) VALUES (
        %(uuid)s, %(name)s, %(dbname)s, %(uid)s, %(model)s, %(method)s, %(ids)s, %(args)s,
        %(context)s, %(queue)s, %(priority)s, %(eta)s, %(expires_at)s, %(call_repr)s,
        CASE WHEN %(waits)s THEN 'waiting' ELSE {_scheduled_or_pending("%(eta)s::timestamp")} END, 0,
        %(limit_name)s, %(max_retries)s, %(time_limit)s, %(soft_time_limit)s, %(traceparent)s,
        %(workflow_id)s, %(workflow_root_id)s, %(receives)s, %(now)s, %(now)s
    ) RETURNING {MESSAGE_COLUMNS}, state
"""

INSERT_WORKFLOW = """
    INSERT INTO celery_workflow (uuid, name, kind, parent_id, root_id, user_id,
                                 create_uid, create_date, write_uid, write_date)
    VALUES (%(uuid)s, %(name)s, %(kind)s, %(parent_id)s, %(root_id)s, %(uid)s,
            %(uid)s, (now() AT TIME ZONE 'UTC'), %(uid)s, (now() AT TIME ZONE 'UTC'))
    RETURNING id, uuid
"""

INSERT_LINK = """
    INSERT INTO celery_task_link (predecessor_id, successor_id, sequence)
    VALUES (%(predecessor)s, %(successor)s, %(sequence)s)
"""

# Read committed: a row a worker claimed meanwhile is skipped, not a conflict.
MARK_SENT = """
    UPDATE celery_task SET sent_at = (now() AT TIME ZONE 'UTC')
     WHERE id = ANY(%(ids)s) AND sent_at IS NULL AND state = 'pending'
"""

# A requeued task goes out under a new Celery id: workers discard messages whose id was revoked.
# A workflow's step whose steps before it are not all done waits for them again; one due later than
# the horizon (see SCHEDULED_OR_PENDING) waits as scheduled.
REQUEUE_TASK = f"""
    UPDATE celery_task
       SET uuid = %(uuid)s,
           state = CASE WHEN EXISTS (
               SELECT 1 FROM celery_task_link l JOIN celery_task p ON p.id = l.predecessor_id
                WHERE l.successor_id = celery_task.id AND p.state <> 'done') THEN 'waiting'
                    ELSE {SCHEDULED_OR_PENDING} END
     WHERE id = %(id)s
    RETURNING {MESSAGE_COLUMNS}, state
"""

# The steps after a requeued one that were cancelled because it did not end done: waiting again.
REVIVE_DOWNSTREAM = """
    WITH RECURSIVE downstream(id) AS (
        SELECT successor_id FROM celery_task_link WHERE predecessor_id = %(id)s
        UNION
        SELECT l.successor_id FROM celery_task_link l JOIN downstream d ON l.predecessor_id = d.id
    )
    UPDATE celery_task
       SET state = 'waiting', done_at = NULL, write_date = (now() AT TIME ZONE 'UTC'),
           exc_type = NULL, exc_message = NULL, traceback = NULL
     WHERE id IN (SELECT id FROM downstream) AND state = 'cancelled'
       AND exc_type = 'celery_task.workflow.StepStopped'
"""

# The waiting steps after a step that will not end done (failed, cancelled, expired): cancelled, saying why.
CANCEL_DOWNSTREAM = """
    WITH RECURSIVE downstream(id) AS (
        SELECT successor_id FROM celery_task_link WHERE predecessor_id = %(id)s
        UNION
        SELECT l.successor_id FROM celery_task_link l JOIN downstream d ON l.predecessor_id = d.id
    ),
    stopped AS (SELECT name, uuid FROM celery_task WHERE id = %(id)s)
    UPDATE celery_task
       SET state = 'cancelled', done_at = (now() AT TIME ZONE 'UTC'), write_date = (now() AT TIME ZONE 'UTC'),
           exc_type = 'celery_task.workflow.StepStopped',
           exc_message = 'step ' || (SELECT name FROM stopped) || ' [' || (SELECT uuid FROM stopped) || '] '
                         || %(why)s || '; this step will not run unless it is requeued'
     WHERE id IN (SELECT id FROM downstream) AND state = 'waiting'
"""

# The cron's vacuum: workflows with a step not finished are kept whole; emptied ones go.
UNFINISHED_WORKFLOWS = """
    SELECT DISTINCT workflow_root_id FROM celery_task WHERE done_at IS NULL AND workflow_root_id IS NOT NULL
"""

DELETE_EMPTY_WORKFLOWS = """
    DELETE FROM celery_workflow w
     WHERE w.root_id IS NULL AND NOT EXISTS (SELECT 1 FROM celery_task t WHERE t.workflow_root_id = w.id)
"""

# The charts' views (models celery.task.duration and celery.task.hourly), made by their init().
DURATION_VIEW = """
    CREATE OR REPLACE VIEW celery_task_duration AS (
        SELECT min(id) AS id, name, min(model_name) AS model_name, count(*) AS runs,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM done_at - started_at)) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM done_at - started_at)) AS p95,
               max(extract(epoch FROM done_at - started_at)) AS longest
          FROM celery_task
         WHERE state = 'done' AND started_at IS NOT NULL AND done_at IS NOT NULL
         GROUP BY name
    )
"""

HOURLY_VIEW = """
    CREATE OR REPLACE VIEW celery_task_hourly AS (
        SELECT min(id) AS id, to_char(date_trunc('hour', create_date), 'YYYY-MM-DD HH24:00') AS hour,
               date_trunc('hour', create_date) AS hour_start, state, name, model_name, user_id,
               count(*) AS tasks
          FROM celery_task
         GROUP BY date_trunc('hour', create_date), state, name, model_name, user_id
    )
"""

# -- worker: claim, outcome, progress ---------------------------------------------------------

# One round trip: take the task's session lock and, only when it was free, claim the record and
# read what its start needs: ``{existing_ids}`` (the records that still exist, or NULL) and
# ``{signaling}`` (Odoo's signaling sequences), filled in by the worker's claim once per model.
# Read committed (autocommit): a concurrent write to the row (the caller marking it sent) is
# waited for and re-read, not turned into a serialization failure.
LOCK_AND_CLAIM = """
    WITH lock AS MATERIALIZED (
        SELECT pg_try_advisory_lock(%(lock_class)s, %(id)s) AS locked,
               -- the previous task's lock, kept until now; re-entrant, so the order is free
               (SELECT pg_advisory_unlock(%(lock_class)s, %(release)s) WHERE %(release)s IS NOT NULL) AS released
    ),
    found AS (
        SELECT t.uuid, t.name, t.state,
               COALESCE((SELECT q.paused FROM celery_queue q WHERE q.name = t.queue), false) AS paused
          FROM celery_task t WHERE t.id = %(id)s
    ),
    claimed AS (
        UPDATE celery_task
           SET state = 'started', attempts = attempts + 1, started_at = (now() AT TIME ZONE 'UTC'),
               sent_at = COALESCE(sent_at, (now() AT TIME ZONE 'UTC')), worker_host = %(host)s,
               write_date = (now() AT TIME ZONE 'UTC'), open_key = CASE WHEN unique_running THEN open_key END
         WHERE id = %(id)s AND uuid = %(uuid)s AND name = %(name)s
           AND state IN ('pending', 'retry', 'started') AND (SELECT locked FROM lock)
           AND NOT (SELECT paused FROM found)
     RETURNING id, uuid, name, dbname, user_id, model_name, method_name, record_ids, args, context,
               call_repr, queue, attempts, max_retries, workflow_id, receives,
               GREATEST(create_date, COALESCE(eta, create_date)) AS due_at,
               (SELECT login FROM res_users WHERE res_users.id = celery_task.user_id) AS login
    )
    SELECT (SELECT locked FROM lock) AS locked, found.uuid AS found_uuid, found.name AS found_name,
           found.state AS found_state, found.paused AS queue_paused, claimed.*,
           (SELECT active FROM res_users WHERE res_users.id = claimed.user_id) AS user_active,
           (now() AT TIME ZONE 'UTC') AS start_now, {existing_ids} AS existing_ids, {signaling}
      FROM (SELECT 1) AS one LEFT JOIN found ON true LEFT JOIN claimed ON true
"""

# ``{existing_ids}`` of LOCK_AND_CLAIM for a model stored in ``{table}``. ``= ANY(ARRAY(...))``, not
# ``IN (SELECT ...)``: the planner takes that IN for a join of unknown size and reads the whole table,
# on every claim (0.8 ms a claim with 8,000 rows in the model's table; its cost grew with the table).
EXISTING_IDS = """CASE WHEN claimed.model_name = %(model)s THEN (
               SELECT COALESCE(array_agg(id), '{{}}') FROM {table}
                WHERE id = ANY(ARRAY(SELECT value::int FROM json_array_elements_text(claimed.record_ids::json)))) END"""

UNLOCK = "SELECT pg_advisory_unlock(%(lock_class)s, %(id)s)"

# What a workflow's step receives: the results of the steps it waited for, in their order.
PREDECESSOR_RESULTS = """
    SELECT p.result FROM celery_task_link l JOIN celery_task p ON p.id = l.predecessor_id
     WHERE l.successor_id = %(id)s
     ORDER BY l.sequence
"""

# In the task transaction that finishes a step: serializes the steps that finish for one waiting
# step, until that transaction ends (PostgreSQL frees the lock once its commit is visible).
LOCK_RELEASE = "SELECT pg_advisory_xact_lock(%(lock_class)s, %(id)s)"

# One other predecessor not done, if any: searched from the last in order, which in a queue drained
# in order is the one still running or waiting, so a member of a large chord reads one or two rows.
UNFINISHED_PREDECESSOR = """
    SELECT l.predecessor_id FROM celery_task_link l JOIN celery_task p ON p.id = l.predecessor_id
     WHERE l.successor_id = %(id)s AND l.predecessor_id <> %(finished)s AND p.state <> 'done'
     ORDER BY l.sequence DESC
     LIMIT 1
"""

RELEASE_STEP = f"""
    UPDATE celery_task SET state = {SCHEDULED_OR_PENDING}, write_date = (clock_timestamp() AT TIME ZONE 'UTC')
     WHERE id = %(id)s AND state = 'waiting'
    RETURNING {MESSAGE_COLUMNS}, state
"""

# What the statements that finish a task return: for a workflow's step, the waiting steps after it,
# each with whether it waits for others too: ``[[successor id, shared], ...]``.
RETURNING_WAITING_SUCCESSORS = """
    RETURNING CASE WHEN workflow_id IS NOT NULL THEN (
              SELECT json_agg(json_build_array(l.successor_id, EXISTS (
                         SELECT 1 FROM celery_task_link w
                          WHERE w.successor_id = l.successor_id AND w.predecessor_id <> l.predecessor_id))
                     ORDER BY l.successor_id)
                FROM celery_task_link l JOIN celery_task s ON s.id = l.successor_id
               WHERE l.predecessor_id = celery_task.id AND s.state = 'waiting') END AS waiting_successors
"""

# In the task's own transaction, with its effects. The claim's fence (uuid and attempt) keeps a
# worker from finishing a task that is no longer its own: cancelled after its claim, requeued, or
# claimed again by another worker after the server ended this one's session (a host cut off longer
# than ``celery_host_timeout``, see sessions.py). Then no row is updated and the worker rolls back
# everything it did. now() is when that transaction began, before the method ran: its end is
# clock_timestamp().
FINISH_STARTED = (
    """
    UPDATE celery_task
       SET state = %(state)s, done_at = (clock_timestamp() AT TIME ZONE 'UTC'),
           write_date = (clock_timestamp() AT TIME ZONE 'UTC'),
           result = %(result)s, exc_type = %(exc_type)s, exc_message = %(exc_message)s, traceback = %(traceback)s,
           open_key = NULL, notice_pending = %(notice)s
     WHERE id = %(id)s AND state = 'started' AND uuid = %(uuid)s AND attempts = %(attempts)s
"""
    + RETURNING_WAITING_SUCCESSORS
)

# After the task's transaction was rolled back, in a new one, under the claim's fence; returns as
# FINISH_STARTED does.
FINISH_TASK = (
    """
    UPDATE celery_task
       SET state = %(state)s, done_at = (now() AT TIME ZONE 'UTC'), write_date = (now() AT TIME ZONE 'UTC'),
           result = %(result)s, exc_type = %(exc_type)s, exc_message = %(exc_message)s, traceback = %(traceback)s,
           open_key = NULL, notice_pending = %(notice)s
     WHERE id = %(id)s AND state = 'started' AND uuid = %(uuid)s AND attempts = %(attempts)s
"""
    + RETURNING_WAITING_SUCCESSORS
)

# ``published``: the worker publishes its next attempt now, held by a worker until its eta. Otherwise
# (a countdown beyond the horizon) it waits here, unsent, for the publisher of due tasks.
RETRY_TASK = """
    UPDATE celery_task
       SET state = 'retry', eta = (now() AT TIME ZONE 'UTC') + make_interval(secs => %(countdown)s),
           sent_at = CASE WHEN %(published)s THEN (now() AT TIME ZONE 'UTC') END,
           write_date = (now() AT TIME ZONE 'UTC'),
           exc_type = %(exc_type)s, exc_message = %(exc_message)s, traceback = %(traceback)s
     WHERE id = %(id)s AND state = 'started' AND uuid = %(uuid)s AND attempts = %(attempts)s
"""

# Who holds a task a finish could not update (its fence did not match): to say why nothing committed.
TASK_HOLDER = "SELECT state, attempts, worker_host FROM celery_task WHERE id = %(id)s"

# From the worker's main process (hard time limit, unknown task name): never over an outcome.
FAIL_UNFINISHED = """
    UPDATE celery_task
       SET state = %(state)s, done_at = (now() AT TIME ZONE 'UTC'), write_date = (now() AT TIME ZONE 'UTC'),
           result = %(result)s, exc_type = %(exc_type)s, exc_message = %(exc_message)s, traceback = %(traceback)s,
           open_key = NULL, notice_pending = %(notice)s
     WHERE id = %(id)s AND state NOT IN ('done', 'cancelled')
"""

# For a database the worker does not serve: only the record the message names, uuid included.
FAIL_UNFINISHED_UUID = """
    UPDATE celery_task
       SET state = %(state)s, done_at = (now() AT TIME ZONE 'UTC'), write_date = (now() AT TIME ZONE 'UTC'),
           result = %(result)s, exc_type = %(exc_type)s, exc_message = %(exc_message)s, traceback = %(traceback)s,
           open_key = NULL, notice_pending = %(notice)s
     WHERE id = %(id)s AND uuid = %(uuid)s AND state NOT IN ('done', 'cancelled')
"""

# A task that runs in another database than its record's leaves a done copy there, with its
# effects: the marker that makes a second run of it a no-op.
MIRROR_TASK = """
    INSERT INTO celery_task (
        uuid, name, dbname, user_id, model_name, method_name, record_ids, args, context, call_repr,
        queue, state, attempts, started_at, done_at, result, create_date, write_date
    ) VALUES (
        %(uuid)s, %(name)s, %(dbname)s, %(user_id)s, %(model_name)s, %(method_name)s, %(record_ids)s,
        %(args)s, %(context)s, %(call_repr)s, %(queue)s, 'done', %(attempts)s, (now() AT TIME ZONE 'UTC'),
        (clock_timestamp() AT TIME ZONE 'UTC'), %(result)s, (now() AT TIME ZONE 'UTC'),
        (clock_timestamp() AT TIME ZONE 'UTC')
    )
"""

MIRRORED = "SELECT 1 FROM celery_task WHERE uuid = %(uuid)s AND state = 'done'"

# On the worker's lock connection while the task runs: the task's own transaction must not
# touch this row, which it commits only at its end.
UPSERT_PROGRESS = """
    INSERT INTO celery_task_progress (task_id, state, current, total, message, meta, create_date, write_date)
    VALUES (%(id)s, %(state)s, %(current)s, %(total)s, %(message)s, %(meta)s,
            (now() AT TIME ZONE 'UTC'), (now() AT TIME ZONE 'UTC'))
    ON CONFLICT (task_id) DO UPDATE
       SET state = EXCLUDED.state, current = EXCLUDED.current, total = EXCLUDED.total,
           message = EXCLUDED.message, meta = EXCLUDED.meta, write_date = EXCLUDED.write_date
"""

# -- worker's main process: notices and live updates (see worker/live.py) ----------------------

# The outcomes whose owners have not heard of them yet, with what a notice says and to whom. A
# workflow's steps wait until the whole workflow has finished: it is told as one. The OR keeps the
# workflow check a lookup per workflow step: as an anti-join, the planner scanned every unfinished
# task once per notice (seconds per round with a backlog, in the worker's event loop).
PENDING_NOTICES = """
    SELECT t.id, t.name, t.state, t.call_repr, t.exc_message, t.workflow_root_id, w.name AS workflow_name,
           u.partner_id, COALESCE(u.celery_task_notify, 'all') AS wants, u.active AS user_active
      FROM celery_task t
      JOIN res_users u ON u.id = t.user_id
      LEFT JOIN celery_workflow w ON w.id = t.workflow_root_id
     WHERE t.notice_pending AND t.state IN ('done', 'failed')
       AND (t.workflow_root_id IS NULL
            OR NOT EXISTS (SELECT 1 FROM celery_task o
                            WHERE o.workflow_root_id = t.workflow_root_id AND o.done_at IS NULL))
     ORDER BY t.id
     LIMIT %(limit)s
       FOR UPDATE OF t SKIP LOCKED
"""

NOTICES_SENT = "UPDATE celery_task SET notice_pending = false WHERE id = ANY(%(ids)s)"

# -- worker: limits (see worker/limits.py) -----------------------------------------------------

# One round trip: the limit's size (the UI record, else the size the worker was given) and the
# first free slot, taken; then the task's start, when it got one. Materialized: evaluated once.
TAKE_SLOT = """
    WITH size AS MATERIALIZED (
        SELECT COALESCE((SELECT size FROM celery_task_limit WHERE name = %(limit)s), %(size)s) AS n
    ),
    slot AS MATERIALIZED (
        SELECT slot FROM generate_series(0, (SELECT n FROM size) - 1) AS slot
         WHERE pg_try_advisory_lock(hashtextextended(%(limit)s || ':' || slot, 0))
         LIMIT 1
    )
    UPDATE celery_task SET started_at = (clock_timestamp() AT TIME ZONE 'UTC')
     WHERE id = %(id)s AND EXISTS (SELECT 1 FROM slot)
    RETURNING (SELECT slot FROM slot) AS slot
"""

RELEASE_SLOT = "SELECT pg_advisory_unlock(hashtextextended(%(limit)s || ':' || %(slot)s, 0))"

# Taking a slot when none is free, and handing a freed one on, take turns on the limit's gate.
LOCK_GATE = "SELECT pg_advisory_lock(hashtextextended('gate:' || %(limit)s, 0))"
UNLOCK_GATE = "SELECT pg_advisory_unlock(hashtextextended('gate:' || %(limit)s, 0))"

# No free slot: the claimed task waits, unpublished, for one to be handed on.
DEFER_TASK = """
    UPDATE celery_task
       SET state = 'deferred', attempts = attempts - 1, started_at = NULL, sent_at = NULL, worker_host = NULL,
           write_date = (now() AT TIME ZONE 'UTC')
     WHERE id = %(id)s AND state = 'started'
"""

# Under the gate: as many deferred tasks of the limit as it has room for, oldest first, back to
# pending. Its room: the slots free now (each tried and let go at once: a slot a dead worker held
# is free, though its task still says started), less the tasks of the limit about to claim one.
HAND_OFF = f"""
    WITH size AS MATERIALIZED (
        SELECT COALESCE((SELECT size FROM celery_task_limit WHERE name = %(limit)s), %(size)s) AS n
    ),
    free AS MATERIALIZED (
        SELECT count(*) AS n FROM generate_series(0, (SELECT n FROM size) - 1) AS slot
         WHERE CASE WHEN pg_try_advisory_lock(hashtextextended(%(limit)s || ':' || slot, 0))
                    THEN pg_advisory_unlock(hashtextextended(%(limit)s || ':' || slot, 0)) ELSE false END
    ),
    claiming AS (
        SELECT count(*) AS n FROM celery_task
         WHERE done_at IS NULL AND limit_name = %(limit)s AND state = 'pending'
    ),
    handed AS (
        SELECT id FROM celery_task
         WHERE done_at IS NULL AND limit_name = %(limit)s AND state = 'deferred'
         ORDER BY id
         LIMIT greatest((SELECT n FROM free) - (SELECT n FROM claiming), 0)
           FOR UPDATE SKIP LOCKED
    )
    UPDATE celery_task SET state = 'pending', write_date = (now() AT TIME ZONE 'UTC')
     WHERE id IN (SELECT id FROM handed)
    RETURNING {MESSAGE_COLUMNS}
"""

# The relay's net: limits whose deferred tasks waited a while (their hand-off may have been lost
# with a worker).
DEFERRED_LIMITS = """
    SELECT DISTINCT limit_name FROM celery_task
     WHERE done_at IS NULL AND limit_name IS NOT NULL
       AND state = 'deferred' AND queue = ANY(%(queues)s) AND write_date < %(cutoff)s
"""

# -- worker's relay ---------------------------------------------------------------------------

EXPIRE_TASKS = """
    UPDATE celery_task
       SET state = 'cancelled', done_at = (now() AT TIME ZONE 'UTC'), exc_type = 'expired',
           exc_message = 'the task expired before a worker ran it', open_key = NULL
     WHERE done_at IS NULL AND expires_at IS NOT NULL AND expires_at < (now() AT TIME ZONE 'UTC')
       AND state IN ('scheduled', 'pending', 'retry', 'deferred')
 RETURNING id
"""

# Never sent a while after its commit (or its release, or its requeue: write_date), a retry past its
# eta, or started long ago (its worker may have died: the relay checks the lock).
STRANDED_TASKS = f"""
    SELECT {MESSAGE_COLUMNS}, state
      FROM celery_task
     WHERE done_at IS NULL
       AND queue = ANY(%(queues)s)
       AND ((state = 'pending' AND sent_at IS NULL AND write_date < %(cutoff)s)
         OR (state = 'retry' AND COALESCE(eta, write_date) < %(cutoff)s)
         OR (state = 'started' AND started_at < %(cutoff)s))
     ORDER BY id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
"""

# Sent, never started, no future ETA: either its message still waits in the queue, or it is lost.
UNSTARTED_QUEUES = """
    SELECT DISTINCT queue FROM celery_task
     WHERE done_at IS NULL AND state = 'pending' AND queue = ANY(%(queues)s)
       AND sent_at < %(cutoff)s AND (eta IS NULL OR eta < %(cutoff)s)
"""

LOST_TASKS = f"""
    SELECT {MESSAGE_COLUMNS}, state
      FROM celery_task
     WHERE done_at IS NULL AND state = 'pending' AND queue = ANY(%(queues)s)
       AND sent_at < %(cutoff)s AND (eta IS NULL OR eta < %(cutoff)s)
     ORDER BY id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
"""

# A task the relay published again waits for its message as a sent pending task: a started one whose
# worker is gone, or a retry past its eta, is not published again at every round while that message
# waits in its queue (only once lost, by the lost-message rule).
MARK_RESENT = """
    UPDATE celery_task
       SET state = 'pending', sent_at = (now() AT TIME ZONE 'UTC'), write_date = (now() AT TIME ZONE 'UTC')
     WHERE id = ANY(%(ids)s) AND state IN ('pending', 'retry', 'started')
"""

TRY_LOCK = "SELECT pg_try_advisory_lock(%(lock_class)s, %(id)s) AS free"

# -- metrics (see metrics.py) -----------------------------------------------------------------

# What Prometheus reads of one database, in one statement: unfinished tasks by queue and state; the
# oldest runnable waiting task of each queue (pending, deferred, a retry: since it became due); the
# failures of the last hour; the started tasks holding a slot of each limit; the workers that ran a
# task in the last five minutes. Unfinished tasks through the partial index on done_at, finished
# ones through the one on done_at IS NOT NULL: a million finished rows are not read.
METRICS = """
    WITH unfinished AS MATERIALIZED (
        SELECT queue, state, limit_name, worker_host, GREATEST(create_date, COALESCE(eta, create_date)) AS due
          FROM celery_task WHERE done_at IS NULL
    ), now_utc AS (SELECT (now() AT TIME ZONE 'UTC') AS at)
    SELECT 'tasks' AS kind, queue AS label, state AS detail, count(*)::float AS value
      FROM unfinished GROUP BY queue, state
    UNION ALL
    SELECT 'oldest_waiting', queue, NULL, extract(epoch FROM (SELECT at FROM now_utc) - min(due))::float
      FROM unfinished WHERE state IN ('pending', 'deferred', 'retry') AND due <= (SELECT at FROM now_utc)
     GROUP BY queue
    UNION ALL
    SELECT 'failed_last_hour', queue, NULL, count(*)::float FROM celery_task
     WHERE done_at IS NOT NULL AND done_at > (SELECT at FROM now_utc) - interval '1 hour' AND state = 'failed'
     GROUP BY queue
    UNION ALL
    SELECT 'slots_used', limit_name, NULL, count(*)::float
      FROM unfinished WHERE state = 'started' AND limit_name IS NOT NULL GROUP BY limit_name
    UNION ALL
    SELECT 'limit_size', name, NULL, size::float FROM celery_task_limit
    UNION ALL
    SELECT 'workers_seen', NULL, NULL, count(DISTINCT worker_host)::float FROM (
        SELECT worker_host FROM unfinished WHERE state = 'started'
        UNION ALL
        SELECT worker_host FROM celery_task
         WHERE done_at IS NOT NULL AND done_at > (SELECT at FROM now_utc) - interval '5 minutes'
    ) AS seen
    UNION ALL
    SELECT 'paused', name, NULL, 1.0 FROM celery_queue WHERE paused
"""

# -- queues (see models/celery_queue.py) ------------------------------------------------------

# Each queue's waiting (runnable: pending, deferred, due retries), running and scheduled tasks, and
# the oldest waiting one's due time.
QUEUES_LOAD = """
    SELECT queue,
           count(*) FILTER (WHERE state IN ('pending', 'deferred', 'retry') AND due <= now_utc),
           count(*) FILTER (WHERE state = 'started'),
           count(*) FILTER (WHERE state = 'scheduled'),
           min(due) FILTER (WHERE state IN ('pending', 'deferred', 'retry') AND due <= now_utc)
      FROM (SELECT queue, state, GREATEST(create_date, COALESCE(eta, create_date)) AS due,
                   (now() AT TIME ZONE 'UTC') AS now_utc
              FROM celery_task WHERE done_at IS NULL AND queue = ANY(%(names)s)) AS unfinished
     GROUP BY queue
"""

# A record for every queue with unfinished tasks, and for the default queue, that has none yet.
RECORD_QUEUES = """
    INSERT INTO celery_queue (name, paused, create_date, write_date)
    SELECT name, false, %(now)s, %(now)s
      FROM (SELECT queue AS name FROM celery_task WHERE done_at IS NULL UNION SELECT %(default)s) AS found
    ON CONFLICT (name) DO NOTHING
"""

# The paused queues of a database (workers read them when they start, and when told of a change).
PAUSED_QUEUES = "SELECT name FROM celery_queue WHERE paused"

#: Where workers hear that a database's queues were paused or resumed (a NOTIFY in postgres, the
#: database's name as payload).
QUEUES_CHANNEL = "celery_task_queues"

# At a resume: the tasks that waited unsent while their queue was paused, published once it commits.
RESUME_QUEUES = f"""
    UPDATE celery_task SET write_date = (now() AT TIME ZONE 'UTC')
     WHERE done_at IS NULL AND state = 'pending' AND sent_at IS NULL AND queue = ANY(%(names)s)
    RETURNING {MESSAGE_COLUMNS}
"""

# A claimed message of a paused queue: the task goes back to wait unsent, unrun (the relay and the
# publisher of due tasks leave paused queues alone; a resume publishes it).
PUT_BACK_PAUSED = """
    UPDATE celery_task SET sent_at = NULL, write_date = (now() AT TIME ZONE 'UTC')
     WHERE id = %(id)s AND state IN ('pending', 'retry')
"""

# -- worker's main process: the publisher of due tasks (see worker/scheduler.py) ---------------

# Scheduled tasks, and retries left unsent, whose eta has come, of the queues the leader relays: made
# pending in the leader's transaction, published once it committed (the relay publishes them if that
# publish never happens). Read through the partial index on eta: only tasks with an eta have an entry.
DUE_TASKS = f"""
    WITH due AS (
        SELECT id FROM celery_task
         WHERE done_at IS NULL AND eta IS NOT NULL AND eta <= (now() AT TIME ZONE 'UTC')
           AND (state = 'scheduled' OR (state = 'retry' AND sent_at IS NULL)) AND queue = ANY(%(queues)s)
         ORDER BY eta
         LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED
    )
    UPDATE celery_task SET state = 'pending', write_date = (now() AT TIME ZONE 'UTC')
     WHERE id IN (SELECT id FROM due)
    RETURNING {MESSAGE_COLUMNS}
"""

# -- worker's main process: who leads the background work (see worker/leadership.py) ------------

# Elections and duties are session advisory locks on one 64-bit key each, a hash of their name (which
# starts with "celery_task "): the key space of the limits' slots, under other names.
STAND_FOR_ELECTION = "SELECT pg_advisory_lock(hashtextextended(%(election)s, 0))"
TAKE_DUTY = "SELECT pg_try_advisory_lock(hashtextextended(%(duty)s, 0))"


# -- row <-> message --------------------------------------------------------------------------


@dataclasses.dataclass
class TaskMessage:
    """What the broker gets for a record: everything it needs, nothing that decides what runs."""

    task_name: str
    task_uuid: str
    dbname: str
    record_id: int
    queue: str
    call_repr: str
    eta: datetime.datetime | None = None
    expires_at: datetime.datetime | None = None
    priority: int | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    traceparent: str | None = None

    @classmethod
    def from_row(cls, dbname, row):
        """The message of a ``celery_task`` row (a dict with the MESSAGE_COLUMNS)."""
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
            time_limit=row.get("time_limit"),
            soft_time_limit=row.get("soft_time_limit"),
            traceparent=row.get("traceparent"),
        )

    @property
    def args(self):
        return [self.dbname, self.record_id]


def message_target(args, kwargs):
    """``(database, record id)`` of a message's arguments, or MalformedMessage saying what is wrong.

    The only shape this addon publishes is ``args=[database name, record id]`` and no kwargs.
    """
    problem = None
    if not isinstance(args, (list, tuple)) or len(args) != 2:
        problem = "expected args [database, task record id]"
    elif not isinstance(args[0], str) or not args[0]:
        problem = "expected args [database, task record id] with the database as a non-empty string"
    elif not isinstance(args[1], int) or isinstance(args[1], bool) or args[1] <= 0:
        problem = "expected args [database, task record id] with the record id as a positive integer"
    elif kwargs:
        problem = "expected args [database, task record id] and no kwargs"
    if problem:
        raise MalformedMessage(f"{problem}, got args={args!r:.200} kwargs={kwargs!r:.200}")
    return args[0], args[1]

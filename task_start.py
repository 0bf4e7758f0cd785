"""What a task's transaction reads before the method runs, in one round trip.

The worker needs the registry's signaling sequences (did another process change the models or
caches?), the task's state (cancelled since its claim?), whether its user is still active, which
of its records still exist, and the transaction's timestamp that Odoo asks for before its first
write. Asked one by one, that is five round trips on every task; folded into one query, one.
"""

import dataclasses
import functools
import json

from odoo.modules.registry import Registry
from odoo.tools import SQL

from . import compat, prepared_statements

# The records that still exist, for a model stored in a table of its own; NULL: ask the ORM.
EXISTING_IDS = "(SELECT COALESCE(array_agg(id), '{{}}') FROM {table} WHERE id = ANY(%(ids)s))"

# Scalar subqueries only: a join of this many relations costs more to plan than to run.
TASK_START = """
    SELECT state, (SELECT active FROM res_users WHERE res_users.id = celery_task.user_id),
           (now() AT TIME ZONE 'UTC'), {existing}, {signaling}
      FROM celery_task
     WHERE id = %(id)s
"""


@dataclasses.dataclass(frozen=True)
class TaskStart:
    registry: Registry
    state: str | None  # None: the task record is gone
    user_active: bool | None  # None: the user is gone
    existing_ids: frozenset | None  # None: not read here, the ORM must check


def read(cr, registry, row):
    """The task's start, with ``registry`` brought up to date (and ``cr.now()`` answered) on the way."""
    query = _query(_stored_table(registry, row["model_name"]))
    prepared_statements.execute(cr, cr, query, {"id": row["id"], "ids": json.loads(row["record_ids"])})
    found = cr.fetchone()
    if found is None:
        return TaskStart(registry.check_signaling(cr), None, None, None)
    state, user_active, now, existing_ids, registry_sequence, *cache_values = found
    cache_names = compat.signaling_sql()[1]
    if not compat.registry_is_current(registry, registry_sequence, dict(zip(cache_names, cache_values, strict=True))):
        registry = registry.check_signaling(cr)
    compat.set_transaction_now(cr, now)
    return TaskStart(registry, state, user_active, None if existing_ids is None else frozenset(existing_ids))


def _stored_table(registry, model_name):
    """The model's own table, or None when the ORM must check (unknown, abstract or SQL-view model)."""
    model = registry.models.get(model_name)
    if model is None or model._abstract or model._table_query:
        return None
    return model._table


@functools.cache
def _query(table):
    """The start query for records in ``table`` (built once per table: it runs on every task)."""
    existing = EXISTING_IDS.format(table=SQL.identifier(table).code) if table else "NULL"
    return TASK_START.format(existing=existing, signaling=compat.signaling_sql()[0])

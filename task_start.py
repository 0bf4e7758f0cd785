"""What a task needs before its method runs, read by the statement that claims it.

Besides the claimed row, the worker needs the registry's signaling sequences (did another process
change the models or caches?), whether the task's user is still active, which of its records
still exist, and the timestamp Odoo's ``cr.now()`` asks for before the first write. Asked one by
one, that is four more round trips on every task; the claim returns them with the row. Whether
the task was cancelled after its claim is checked by its final update (see runner.FINISH_STARTED).
"""

import dataclasses
import functools

from odoo.modules.registry import Registry
from odoo.tools import SQL

from . import compat

# The records that still exist, when the claimed row is of ``%(model)s``, stored in ``{table}``; NULL: ask the ORM.
EXISTING_IDS = """CASE WHEN claimed.model_name = %(model)s THEN (
               SELECT COALESCE(array_agg(id), '{{}}') FROM {table}
                WHERE id IN (SELECT value::int FROM json_array_elements_text(claimed.record_ids::json))) END"""

# Scalar subqueries only: a join of this many relations costs more to plan than to run.
START_COLUMNS = """(SELECT active FROM res_users WHERE res_users.id = claimed.user_id) AS user_active,
           (now() AT TIME ZONE 'UTC') AS start_now, {existing} AS existing_ids, {signaling}"""


@dataclasses.dataclass(frozen=True)
class TaskStart:
    registry: Registry
    user_active: bool | None  # None: the user is gone
    existing_ids: frozenset | None  # None: not read by the claim, the ORM must check


def claim_columns(registry, model_name):
    """The select list the claim adds over its ``claimed`` row (``%(model)s``: the task's model)."""
    return _columns(_stored_table(registry, model_name))


def begin(cr, registry, row):
    """The task's start, from its claimed ``row``: ``registry`` brought up to date, ``cr.now()`` answered."""
    cache_sequences = {name: row[f"cache_sequence_{name}"] for name in compat.signaling_sql()[1]}
    if not compat.registry_is_current(registry, row["registry_sequence"], cache_sequences):
        registry = registry.check_signaling(cr)
    compat.set_transaction_now(cr, row["start_now"])
    existing_ids = row["existing_ids"]
    return TaskStart(registry, row["user_active"], None if existing_ids is None else frozenset(existing_ids))


def _stored_table(registry, model_name):
    """The model's own table, or None when the ORM must check (unknown, abstract or SQL-view model)."""
    model = registry.models.get(model_name)
    if model is None or model._abstract or model._table_query:
        return None
    return model._table


@functools.cache
def _columns(table):
    """Built once per table: the claim runs on every task."""
    existing = EXISTING_IDS.format(table=SQL.identifier(table).code) if table else "NULL"
    return START_COLUMNS.format(existing=existing, signaling=compat.signaling_sql()[0])

"""The memory floor: a plain Celery worker with an Odoo registry loaded, in a database without celery_task.

What any Odoo-on-Celery integration holds in each pool process: the settings of raw_app.py, the
registry of a database with the addon's dependencies (bus) and the bench model (ct_bench_floor),
loaded before the pool forks as the addon's bootstrap does, and ``touch``'s ORM write as the task.
The worker runs it as ``celery -A floor_app worker``; the benchmark imports it to publish.
"""

import os
import warnings

from celery import signals
from raw_app import plain_app

BROKER_ENV = "CT_BENCH_FLOOR_BROKER"
CONFIG_ENV = "CT_BENCH_FLOOR_CONFIG"
DATABASE_ENV = "CT_BENCH_FLOOR_DB"

app = plain_app("ct_bench_floor", BROKER_ENV, "redis://127.0.0.1:6379/12")


@signals.worker_init.connect
def load_registry(**_kwargs):
    """In the worker's main process, before the fork: the registry loaded, its connections closed."""
    import odoo.tools
    from odoo import sql_db
    from odoo.modules.registry import Registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        odoo.tools.config.parse_config(["-c", os.environ[CONFIG_ENV]])
    Registry(os.environ[DATABASE_ENV])
    sql_db.close_all()


@app.task(name="ct_bench.orm_touch")
def orm_touch(dbname, item_id, value):
    """``touch``'s write in its own Odoo transaction."""
    from odoo import api
    from odoo.modules.registry import Registry

    with Registry(dbname).cursor() as cr:
        env = api.Environment(cr, api.SUPERUSER_ID, {})  # held: the commit only flushes live environments
        env["ct.bench.item"].browse(item_id).write({"value": value})

"""A caller process for the unique-task race: each round it opens a transaction, waits for the other
racer, then makes the same unique call and commits. Started by tests/test_limits.py (spawn)."""

import os
import warnings


def race(config_path, dbname, item_id, rounds, barrier, results, settings):
    """Make ``rounds`` unique calls on ``item_id`` (the round's number as argument), each after the barrier."""
    import odoo.tools

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        odoo.tools.config.parse_config(["-c", str(config_path)])
    from odoo import api
    from odoo.modules.registry import Registry

    from odoo.addons.celery_task import app
    from odoo.addons.celery_task.publisher import publisher

    app.reconfigure(**settings)
    registry = Registry(dbname)
    for round_number in range(rounds):
        barrier.wait()
        with registry.cursor() as cr:
            cr.execute("SELECT 1")  # this transaction's snapshot: taken before either racer inserts
            barrier.wait()
            env = api.Environment(cr, api.SUPERUSER_ID, {})
            result = env["task.test.item"].browse(item_id).unique_bump(round_number)
        results.put((os.getpid(), round_number, result.id))
    publisher.wait_idle(timeout=60)

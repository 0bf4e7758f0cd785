"""The caller of the multi-host tests (tests/hosts.py): commits one call per new test item, prints the item ids.

    python hosts_caller.py CONFIG DATABASE COUNT METHOD [ARG...]

Runs in a process of its own, with the config of the hosts' cluster: the pytest process's Odoo
talks to the machine's cluster. Each hundred calls are one transaction; it exits once the
publisher has sent them all.
"""

import sys
import warnings

import odoo.tools
from odoo import api
from odoo.modules.registry import Registry

BATCH = 100


def main(config_path, dbname, count, method, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        odoo.tools.config.parse_config(["-c", config_path])
    registry = Registry(dbname)
    from odoo.addons.celery_task.publisher import publisher  # importable once the registry set the addons path

    with registry.cursor() as cr:
        item_ids = api.Environment(cr, api.SUPERUSER_ID, {})["task.test.item"].create([{"name": "host"}] * count).ids
    for start in range(0, count, BATCH):
        with registry.cursor() as cr:
            items = api.Environment(cr, api.SUPERUSER_ID, {})["task.test.item"].browse(item_ids[start : start + BATCH])
            for item in items:
                getattr(item, method)(*(float(arg) for arg in args))
    if not publisher.wait_idle(timeout=120):
        raise SystemExit("the publisher did not send every call within 120 s")
    print(",".join(map(str, item_ids)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], *sys.argv[5:])

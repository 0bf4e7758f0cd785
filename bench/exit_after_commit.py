"""Five decorated calls in five committed transactions, then the process exits at once (no sleep).

    python exit_after_commit.py ODOO_CONF DATABASE ID,ID,ID,ID,ID VALUE

What a short script or a cron-like command does. Prints ``committed <id> <time.time()>`` after each
commit; the benchmark watches the broker and the ``sent_at`` marks from there (see features.py).
"""

import sys
import time
import warnings

import odoo.tools
from odoo import api
from odoo.modules.registry import Registry

config_path, dbname, ids, value = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with warnings.catch_warnings():
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    odoo.tools.config.parse_config(["-c", config_path])
registry = Registry(dbname)
for item_id in (int(text) for text in ids.split(",")):
    with registry.cursor() as cr:
        api.Environment(cr, api.SUPERUSER_ID, {})["ct.bench.item"].browse(item_id).touch(value)
    print(f"committed {item_id} {time.time()}", flush=True)

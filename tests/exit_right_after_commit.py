"""A script that commits a few decorated calls and exits at once (tests/test_end_to_end.py runs it)."""

import sys
import warnings

import odoo.tools
from odoo import api
from odoo.modules.registry import Registry

with warnings.catch_warnings():
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    odoo.tools.config.parse_config(["-c", sys.argv[1]])

registry = Registry(sys.argv[2])
item_id = int(sys.argv[3])
with registry.cursor() as cr:  # one commit, then the end: the publisher thread has no head start
    for _ in range(5):
        api.Environment(cr, api.SUPERUSER_ID, {})["task.test.item"].browse(item_id).bump()
print("committed", flush=True)

"""A caller that does not use OpenTelemetry, where it is installed: the addon's call, its publish
included, loads nothing of it beyond what the broker's client library loads on its own (redis-py 7
loads OpenTelemetry's API where it is installed). Then a worker's set-up where it is not installed
(every import of it fails) goes on without it. tests/test_tracing.py runs it."""

import sys
import warnings

import celery  # noqa: F401 - the libraries the addon uses: what they load is theirs
import kombu  # noqa: F401
import redis  # noqa: F401

import odoo.tools
from odoo import api
from odoo.modules.registry import Registry


def loaded():
    return {name for name in sys.modules if name.startswith("opentelemetry")}


libraries = loaded()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    odoo.tools.config.parse_config(["-c", sys.argv[1]])

registry = Registry(sys.argv[2])
with registry.cursor() as cr:
    result = api.Environment(cr, api.SUPERUSER_ID, {})["task.test.item"].browse(int(sys.argv[3])).bump()

from odoo.addons.celery_task.publisher import publisher  # noqa: E402 - loaded with the registry above

publisher.wait_idle(timeout=30)
added = sorted(loaded() - libraries)

from odoo.addons.celery_task import tracing  # noqa: E402

for name in loaded():
    sys.modules[name] = None  # what "not installed" looks like to an import
sys.modules["opentelemetry"] = None
tracing.instrument_worker()
print("task", result.id, "loaded", ",".join(added) or "nothing", flush=True)

"""``/celery_task/metrics``: the task table's gauges for Prometheus, from Odoo (metrics.py).

For a cluster whose workers have no port to scrape. Open to Celery managers (a session) and to the
bearer of the token in the system parameter ``celery_task.metrics_token`` (``Authorization: Bearer
<token>``; no token set, no token access). It serves the database Odoo picks for the request (its
``dbfilter``, or the session's), read at most every ``celery_metrics_cache_seconds``.

prometheus_client is imported when the route is first called, never when Odoo loads the addon: a
worker decides how its processes keep their metrics before it first imports it
(worker_bootstrap.py).
"""

import hmac

from odoo import http
from odoo.http import request
from odoo.modules.registry import Registry

TOKEN_PARAM = "celery_task.metrics_token"

_registries = {}  # database -> the prometheus_client registry of its gauges, kept for their cache


class CeleryTaskMetrics(http.Controller):
    @http.route("/celery_task/metrics", type="http", auth="public", methods=["GET"], csrf=False, save_session=False)
    def metrics(self):
        if not (_is_manager() or _has_token()):
            return request.make_response("a Celery manager's session or the metrics token is needed\n", status=403)
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = generate_latest(_registry(request.env.cr.dbname))
        return request.make_response(body, headers=[("Content-Type", CONTENT_TYPE_LATEST)])


def _is_manager():
    return request.env.user.has_group("celery_task.group_celery_manager")


def _has_token():
    token = request.env["ir.config_parameter"].sudo().get_param(TOKEN_PARAM)
    given = request.httprequest.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def _registry(dbname):
    if dbname not in _registries:
        from prometheus_client import CollectorRegistry

        from .. import metrics

        def read():
            with Registry(dbname).cursor() as cr:
                return {dbname: metrics.read_database(cr)}

        registry = CollectorRegistry()
        registry.register(metrics.TaskTableCollector(read))
        _registries[dbname] = registry
    return _registries[dbname]

"""A worker's own counters and histograms, and the Prometheus endpoint of its main process.

The pool processes count what they run; the main process counts what its background work publishes
again. With ``celery_metrics_port`` set, the bootstrap points ``PROMETHEUS_MULTIPROC_DIR`` at a folder
of this worker's own before anything imports prometheus_client (worker_bootstrap.py): every process
of the worker then keeps its values in files there, and the main process's endpoint adds them up
(prometheus_client's multiprocess mode), with the gauges read from the task table (metrics.py).
Without a port, the counters are kept in memory and nobody reads them: an increment costs nothing
worth measuring either way.
"""

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client import multiprocess as prometheus_multiprocess

from .. import compat, config, databases, metrics, sessions

PREFIX = metrics.PREFIX
TASK = ("task",)
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

STARTED = Counter(f"{PREFIX}_started_total", "Tasks this worker started (claimed)", TASK)
SUCCEEDED = Counter(f"{PREFIX}_succeeded_total", "Tasks this worker ran to done", TASK)
FAILED = Counter(f"{PREFIX}_failed_total", "Tasks this worker ran that failed", TASK)
RETRIED = Counter(f"{PREFIX}_retried_total", "Tasks this worker ran that will be retried", TASK)
RUNTIME = Histogram(
    f"{PREFIX}_runtime_seconds", "Time a task ran: its transaction, method and outcome", TASK, buckets=SECONDS
)
START_DELAY = Histogram(
    f"{PREFIX}_start_delay_seconds",
    "From the call (the task record's creation, or its eta when later) to its start on this worker",
    TASK,
    buckets=SECONDS,
)
DUPLICATES = Counter(
    f"{PREFIX}_duplicates_skipped_total",
    "Messages of a task another worker runs or already finished: acknowledged, nothing ran",
    TASK,
)
REJECTED = Counter(
    f"{PREFIX}_rejected_messages_total",
    "Messages refused and left unrun: malformed, forged, for an unknown task or a database not served",
    ("reason",),
)
REPUBLISHED = Counter(
    f"{PREFIX}_republished_total",
    "Tasks this worker's relay published again: never sent (stranded), lost by the broker, a slot handed on",
    ("reason",),
)
DUE_PUBLISHED = Counter(f"{PREFIX}_due_published_total", "Scheduled tasks this worker published when due")


_served = []


def serve_once():
    """The main process's endpoint on ``celery_metrics_port``, started after the pool forked (a child would
    hold its socket): every process's counters and the task table's gauges. Nothing without a port."""
    port = config.addon_option("metrics_port")
    if port is None or _served:
        return
    registry = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(registry)
    registry.register(metrics.TaskTableCollector(_read_served))
    _served.append(start_http_server(int(port), addr=config.addon_option("metrics_address"), registry=registry))


_connections = {}  # dbname -> connection of the endpoint's thread


def _read_served():
    """The task table's rows of every database this worker serves, on connections of the endpoint's own."""
    found = {}
    for dbname in databases.known():
        connection = _connections.get(dbname)
        if connection is None or connection.closed:
            connection = compat.open_connection(dbname, role="celery_task metrics", **sessions.client_parameters())
            _connections[dbname] = connection
            connection.autocommit = True
        try:
            with connection.cursor() as cr:
                found[dbname] = metrics.read_database(cr)
        except Exception:
            connection.close()
            raise
    return found

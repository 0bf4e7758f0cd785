"""Prometheus metrics of a real worker: each value against what the database and the worker did; promtool's
check; a real Prometheus server scraping it, with the query an autoscaler (KEDA) runs; the Grafana
dashboard's queries name only metrics that exist."""

import datetime
import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

import harness

pytestmark = pytest.mark.odoo

DASHBOARD = harness.REPO / "docs" / "grafana" / "celery_task.json"


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def samples(text):
    """``{(name, frozenset(labels)): value}`` of an exposition, read by prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found, name, **labels):
    return found.get((name, frozenset(labels.items())))


def metrics_env(port, cache_seconds):
    return {"ODOO_CELERY_METRICS_PORT": str(port), "ODOO_CELERY_METRICS_CACHE_SECONDS": str(cache_seconds)}


@pytest.fixture
def metered(stack, fault_worker):
    """A worker with its metrics on a port (read anew at each scrape), and a queue of its own."""
    port = harness.free_port()
    worker = fault_worker("redis", env=metrics_env(port, 0))
    stack.point_caller(harness.BROKERS["redis"], worker.queue)
    worker.start(stack.app)
    worker.port = port
    return worker


def test_each_metric_says_what_the_database_and_the_worker_did(stack, metered):
    from odoo.addons.celery_task.app import publish_all
    from odoo.addons.celery_task.task_record import TaskMessage

    idle_queue = f"{metered.queue}-idle"  # nobody consumes it: its tasks wait
    item_ids = [stack.new_item() for _ in range(6)]
    done = [stack.call("bump", item_id) for item_id in item_ids[:3]]
    failed = stack.call("fail", item_ids[3])
    retried = stack.call("flaky", item_ids[4], succeed_on=2)
    with stack.env() as env:
        waiting = [env["task.test.item"].browse(item_ids[5]).with_delay(queue=idle_queue).bump() for _ in range(3)]
    rows = [stack.wait_row(result.id, timeout=30) for result in (*done, failed, retried)]
    assert [row["state"] for row in rows] == ["done"] * 3 + ["failed", "done"]
    assert publish_all([TaskMessage.from_row(stack.db, rows[0])]), "a duplicate"
    stack.app.send_task("task.test.item.bump", args=["no-such-shape"], queue=metered.queue)  # a malformed message
    harness.wait_for(lambda: "duplicate" in metered.log() or "already done" in metered.log(), 20, what="the duplicate")
    harness.wait_for(lambda: "message rejected" in metered.log(), 20, what="the malformed message")

    found = samples(scrape(metered.port))
    bump, fail, flaky = "task.test.item.bump", "task.test.item.fail", "task.test.item.flaky"
    assert value(found, "celery_task_started_total", task=bump) == 3
    assert value(found, "celery_task_succeeded_total", task=bump) == 3
    assert value(found, "celery_task_failed_total", task=fail) == 1
    assert value(found, "celery_task_retried_total", task=flaky) == 1
    assert value(found, "celery_task_succeeded_total", task=flaky) == 1
    assert value(found, "celery_task_runtime_seconds_count", task=bump) == 3
    assert value(found, "celery_task_start_delay_seconds_count", task=bump) == 3
    assert value(found, "celery_task_duplicates_skipped_total", task=bump) == 1
    assert value(found, "celery_task_rejected_messages_total", reason="malformed") == 1

    with stack.env() as env:
        env.cr.execute(
            "SELECT state, count(*) FROM celery_task WHERE done_at IS NULL AND queue = %s GROUP BY state", [idle_queue]
        )
        in_database = dict(env.cr.fetchall())
        env.cr.execute(
            "SELECT count(*) FROM celery_task WHERE state = 'failed' AND queue = %s"
            " AND done_at > (now() AT TIME ZONE 'UTC') - interval '1 hour'",
            [metered.queue],
        )
        failed_in_database = env.cr.fetchone()[0]
    assert in_database == {"pending": 3}
    assert value(found, "celery_task_tasks", database=stack.db, queue=idle_queue, state="pending") == 3
    assert value(found, "celery_task_queue_work", database=stack.db, queue=idle_queue) == 3
    assert value(found, "celery_task_queue_load", database=stack.db, queue=idle_queue) == 3, "no consumer: against 1"
    oldest = value(found, "celery_task_oldest_waiting_seconds", database=stack.db, queue=idle_queue)
    assert 0 < oldest < 120
    assert value(found, "celery_task_failed_last_hour", database=stack.db, queue=metered.queue) == failed_in_database
    assert value(found, "celery_task_workers_seen", database=stack.db) >= 1
    assert value(found, "celery_task_limit_slots", database=stack.db, limit="task.test.item.limited") == 2
    assert value(found, "celery_task_limit_slots_used", database=stack.db, limit="task.test.item.limited") == 0
    assert value(found, "celery_task_queue_consumers", queue=metered.queue) == 1
    assert value(found, "celery_task_queue_concurrency", queue=metered.queue) == 2
    for result in waiting:
        stack.set_task_columns(stack.task_id(result), state="cancelled", done_at=datetime.datetime.utcnow())


def test_the_gauges_are_read_once_per_cache_period(stack, fault_worker):
    port = harness.free_port()
    worker = fault_worker("redis", env=metrics_env(port, 3))
    worker.start(stack.app)
    queue = f"{worker.queue}-cached"
    item_id = stack.new_item()

    def pending():
        return value(samples(scrape(port)), "celery_task_tasks", database=stack.db, queue=queue, state="pending")

    with stack.env() as env:
        first = env["task.test.item"].browse(item_id).with_delay(queue=queue).bump()
    harness.wait_for(lambda: pending() == 1, 10, what="a scrape to read the call")  # that scrape filled the cache
    with stack.env() as env:
        second = env["task.test.item"].browse(item_id).with_delay(queue=queue).bump()
    assert pending() == 1, "within the cache period: the same read"
    time.sleep(3.1)
    assert pending() == 2, "after it: read anew"
    for result in (first, second):
        stack.set_task_columns(stack.task_id(result), state="cancelled", done_at=datetime.datetime.utcnow())


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Debian: prometheus)")
def test_promtool_finds_nothing_to_say_and_prometheus_scrapes_what_an_autoscaler_reads(stack, metered, tmp_path):
    text = scrape(metered.port)
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), checked
    queue = f"{metered.queue}-autoscale"
    item_id = stack.new_item()
    with stack.env() as env:
        waiting = [env["task.test.item"].browse(item_id).with_delay(queue=queue).bump() for _ in range(4)]
    query = next(line for line in _keda_doc() if line.strip().startswith("query:")).split("query:", 1)[1]
    query = query.strip().replace("carrier", queue)
    prometheus_port = harness.free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 3s, scrape_timeout: 3s}\n"
        f"scrape_configs: [{{job_name: celery_task, static_configs: [{{targets: ['127.0.0.1:{metered.port}']}}]}}]\n"
    )
    server = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def answered():
            url = f"http://127.0.0.1:{prometheus_port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    result = json.load(response)["data"]["result"]
            except OSError:  # not listening yet
                return None
            return result and float(result[0]["value"][1])

        try:
            scaled = harness.wait_for(answered, 60, interval=0.5, what="Prometheus to answer the autoscaling query")
        except TimeoutError:
            with urllib.request.urlopen(f"http://127.0.0.1:{prometheus_port}/api/v1/targets", timeout=5) as response:
                raise AssertionError(f"Prometheus's targets: {response.read().decode()[:2000]}") from None
        assert scaled == 4
        documented = "\n".join(_keda_doc())
        start = documented.index("```sql") + len("```sql")
        statement = documented[start : documented.index("```", start)].replace("carrier", queue)
        with stack.env() as env:
            env.cr.execute(statement)
            assert env.cr.fetchone()[0] == 4, "KEDA's PostgreSQL scaler, on the statement behind the metric"
    finally:
        server.terminate()
        server.wait(10)
        for result in waiting:
            stack.set_task_columns(stack.task_id(result), state="cancelled", done_at=datetime.datetime.utcnow())


def _keda_doc():
    """The lines of docs/operations.md that configure KEDA: the query the test runs is the documented one."""
    text = (harness.REPO / "docs" / "operations.md").read_text()
    return text[text.index("## Autoscaling") :].splitlines()


def exposed_names(text):
    """Every sample name an exposition declares, whether it has samples yet or not."""
    from prometheus_client.parser import text_string_to_metric_families

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in suffixes.get(family.type, ("",))
    }


def declared_names():
    """The names of the worker's counters and histograms, as it declares them (a worker that counted nothing yet
    exposes none of them)."""
    from prometheus_client.metrics import MetricWrapperBase

    from odoo.addons.celery_task.worker import metrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    wrappers = [value for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)]
    return {
        family.name + suffix
        for wrapper in wrappers
        for family in wrapper.describe()
        for suffix in suffixes.get(family.type, ("",))
    }


def test_the_grafana_dashboard_uses_only_metrics_that_exist(stack, metered):
    exposed = exposed_names(scrape(metered.port)) | declared_names()
    panels = json.loads(DASHBOARD.read_text())["panels"]
    used = {
        name
        for panel in panels
        for target in panel["targets"]
        for name in re.findall(r"celery_task_\w+", target["expr"])
    }
    assert used and used <= exposed, f"not exposed: {sorted(used - exposed)}"

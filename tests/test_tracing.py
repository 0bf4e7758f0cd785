"""OpenTelemetry: a task's span in the worker is a child of the span that made the call, whether its
message went out from the caller's publisher or from the worker's relay; a caller that does not use
OpenTelemetry loads nothing of it, and a worker without it installed runs as before."""

import json
import os
import random

import pytest
from opentelemetry import trace

import harness

pytestmark = pytest.mark.odoo

SITE = harness.REPO / "tests" / "tracing_site"


def traced_worker(fault_worker, broker, spans):
    """A worker with OpenTelemetry's SDK set up at its start (tests/tracing_site), its spans in ``spans``."""
    path = os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))
    return fault_worker(broker, env={"PYTHONPATH": path, "CT_TEST_SPANS": str(spans)})


def call_span():
    """A sampled span of the caller's, as an instrumented Odoo request would have; and its ids, in hex."""
    context = trace.SpanContext(
        trace_id=random.getrandbits(128),
        span_id=random.getrandbits(64),
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    return trace.NonRecordingSpan(context), f"{context.trace_id:032x}", f"{context.span_id:016x}"


def read_spans(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_span(spans, task_name, trace_id):
    """The worker's span of ``task_name`` in trace ``trace_id``, once exported."""

    def exported():
        found = [s for s in read_spans(spans) if s["trace_id"] == trace_id and s["name"] == f"run/{task_name}"]
        return found[0] if found else None

    return harness.wait_for(exported, 30, what=f"the worker's span of {task_name} in trace {trace_id}")


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_the_task_span_is_a_child_of_the_call_span(stack, fault_worker, broker, tmp_path):
    spans = tmp_path / "spans.jsonl"
    worker = traced_worker(fault_worker, broker, spans)
    stack.point_caller(harness.BROKERS[broker], worker.queue)
    worker.start(stack.app)
    assert "tasks traced by opentelemetry-instrumentation-celery" in worker.log()
    item_id = stack.new_item()

    span, trace_id, span_id = call_span()
    with trace.use_span(span):
        result = stack.call("bump", item_id)
    untraced = stack.call("bump", item_id)

    row = stack.wait_row(result.id)
    assert row["traceparent"] == f"00-{trace_id}-{span_id}-01", "the call's context, kept on its record"
    assert row["state"] == "done"
    run = run_span(spans, row["name"], trace_id)
    assert run["parent_id"] == span_id, "published by the caller's publisher: a child of the call's span"
    assert stack.wait_row(untraced.id)["traceparent"] is None, "no span, no trace context"


def test_a_task_the_relay_publishes_stays_in_the_call_trace(stack, fault_worker, tmp_path):
    spans = tmp_path / "spans.jsonl"
    worker = traced_worker(fault_worker, "redis", spans)
    stack.point_caller(harness.BROKERS["redis"], worker.queue)
    item_id = stack.new_item()
    span, trace_id, span_id = call_span()
    with trace.use_span(span):
        row = stack.unpublished_call("bump", item_id)
    assert row["sent_at"] is None and row["traceparent"] == f"00-{trace_id}-{span_id}-01"

    worker.start(stack.app)
    assert stack.wait_row(row["uuid"], timeout=60)["state"] == "done"
    run = run_span(spans, row["name"], trace_id)
    if run["parent_id"] != span_id:  # the relay of a traced worker: its publish span comes between
        publish = {s["span_id"]: s for s in read_spans(spans)}[run["parent_id"]]
        assert publish["name"] == f"apply_async/{row['name']}", publish
        assert publish["parent_id"] == span_id, "the relay's publish is a child of the call's span"


def test_without_opentelemetry_nothing_is_loaded_and_tasks_run(stack, redis):
    item_id = stack.new_item()
    done = harness.run_caller_script(stack, "call_without_opentelemetry.py", item_id, redis.env)
    assert done.returncode == 0, done.stderr[-3000:]
    words = done.stdout.split()
    assert words[2:] == ["loaded", "nothing"], done.stdout
    row = stack.wait_row(words[1])
    assert (row["state"], row["traceparent"]) == ("done", None)

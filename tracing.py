"""OpenTelemetry trace context across the outbox: the task's span in the worker is a child of the call's.

The message goes out after the caller's commit, from the publisher thread or the relay, outside the
caller's span: so the call's W3C ``traceparent`` is read in the caller's transaction, kept on the
task record, and restored around the publish. opentelemetry-instrumentation-celery, in the worker,
finds it in the message's headers. This module imports nothing of OpenTelemetry that its process did
not load already; only the worker's set-up loads the Celery instrumentation, where it is installed.
"""

import contextlib
import logging
import sys

_logger = logging.getLogger(__name__)

HEADER = "traceparent"


def _trace_api():
    """OpenTelemetry's trace API if this process loaded it (its SDK, an instrumentation, or a library did), else
    None: so a process without OpenTelemetry imports nothing of it here."""
    return sys.modules.get("opentelemetry.trace")


def current_traceparent():
    """The W3C ``traceparent`` of the caller's current span, or None (no span, or no OpenTelemetry)."""
    trace = _trace_api()
    if trace is None:
        return None
    span = trace.get_current_span().get_span_context()
    if not span.is_valid:
        return None
    return f"00-{span.trace_id:032x}-{span.span_id:016x}-{span.trace_flags:02x}"


def headers(traceparent):
    """A message's headers for a task record's ``traceparent``: where the worker's instrumentation reads it."""
    return {HEADER: traceparent} if traceparent else None


@contextlib.contextmanager
def call_context(traceparent):
    """Make the call's span current while its message is published: a publish span, if an instrumentation
    makes one, is then the call's child and passes the trace on, instead of starting a trace of its own."""
    trace = _trace_api()
    span = _remote_span(trace, traceparent) if traceparent and trace is not None else None
    if span is None:
        yield
        return
    from opentelemetry import context  # loaded with the trace API

    token = context.attach(trace.set_span_in_context(trace.NonRecordingSpan(span)))
    try:
        yield
    finally:
        context.detach(token)


def _remote_span(trace, traceparent):
    """The span context a ``traceparent`` names; None if it is malformed (a message is published all the same)."""
    try:
        _version, trace_id, span_id, flags = traceparent.split("-")
        span = trace.SpanContext(
            int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=trace.TraceFlags(int(flags, 16))
        )
    except (ValueError, TypeError):
        _logger.warning("celery_task: malformed traceparent %r; published outside its trace", traceparent)
        return None
    return span if span.is_valid else None


def instrument_worker():
    """Trace the worker's tasks with opentelemetry-instrumentation-celery, where it is installed."""
    try:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
    except ImportError:
        return
    instrumentor = CeleryInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:  # opentelemetry-instrument may have done it
        instrumentor.instrument()
    _logger.info("celery_task: tasks traced by opentelemetry-instrumentation-celery")

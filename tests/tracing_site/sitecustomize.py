"""OpenTelemetry's SDK set up at a worker's start, as ``opentelemetry-instrument`` does (with a
sitecustomize too): every span ends as a JSON line in the file $CT_TEST_SPANS (tests/test_tracing.py)."""

import json
import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class JsonLinesExporter(SpanExporter):
    """Synchronous and append-only: right in the pool processes a fork made, with no thread to restart."""

    def __init__(self, path):
        self.path = path

    def export(self, spans):
        with open(self.path, "a") as out:
            for span in spans:
                record = {
                    "name": span.name,
                    "trace_id": f"{span.context.trace_id:032x}",
                    "span_id": f"{span.context.span_id:016x}",
                    "parent_id": span.parent and f"{span.parent.span_id:016x}",
                    "pid": os.getpid(),
                }
                out.write(json.dumps(record) + "\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(os.environ["CT_TEST_SPANS"])))
trace.set_tracer_provider(provider)

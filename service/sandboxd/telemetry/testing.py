"""Testing helpers: a ``Telemetry`` whose spans and metrics stay in memory, for tests to read.

    captured = capture()
    async with running_service(settings, applier, telemetry=captured.telemetry): ...
    spans = captured.spans()          # finished spans, oldest first
    names = captured.metric_names()   # every metric recorded so far
    prometheus_sample(text, "sandboxd_dead_letters_total", reason="InvalidEvent")  # one value from /metrics

Nothing is installed process-wide, so each test gets a fresh capture and no test sees another's spans.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from sandboxd.telemetry import tracing
from sandboxd.telemetry.environment import resource
from sandboxd.telemetry.metrics import Instruments, meter_provider
from sandboxd.telemetry.providers import Telemetry


@dataclass(frozen=True)
class Captured:
    telemetry: Telemetry
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def metrics(self) -> MetricsData | None:
        return self.reader.get_metrics_data()

    def metric_names(self) -> set[str]:
        data = self.metrics()
        if data is None:
            return set()
        return {
            metric.name
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }


def capture() -> Captured:
    """A ``Telemetry`` exporting spans to memory (synchronously, on end) and metrics to a reader and Prometheus."""
    exporter = InMemorySpanExporter()
    traces = TracerProvider(resource=resource())
    traces.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    registry = CollectorRegistry()
    meters = meter_provider(registry, readers=[reader])
    telemetry = Telemetry(
        instruments=Instruments.from_provider(meters),
        registry=registry,
        meter_provider=meters,
        tracer_provider=traces,
        tracer=tracing.tracer_of(traces),
    )
    return Captured(telemetry, exporter, reader)


def prometheus_sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample called ``name`` whose labels include ``labels`` (None if there is none)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None

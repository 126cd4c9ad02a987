"""The telemetry of one process: its tracer (or none), its instruments and the Prometheus registry they feed.

``Telemetry.from_environment()`` is what the service uses by default:

- traces exported over OTLP/HTTP only when an ``OTEL_EXPORTER_OTLP_*ENDPOINT`` is set; otherwise the tracer is
  None (tracing off, no span work at all);
- metrics always read by Prometheus from a registry of the service's own (``/metrics`` serves it beside
  ``prometheus_client``'s default one), and pushed over OTLP/HTTP when an endpoint is set.

Tests build one with in-memory exporters (``sandboxd.telemetry.testing``). What it deliberately does not do:
serve HTTP (``app.http`` does), or replace a tracer provider another part of the process installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry

from sandboxd.telemetry import tracing
from sandboxd.telemetry.metrics import Instruments, meter_provider


@dataclass(frozen=True)
class Telemetry:
    instruments: Instruments
    registry: CollectorRegistry
    meter_provider: MeterProvider
    tracer_provider: TracerProvider | None = None
    tracer: Tracer | None = field(default=None)

    @classmethod
    def from_environment(cls) -> Telemetry:
        registry = CollectorRegistry()
        meters = meter_provider(registry)
        traces = tracing.tracer_provider_from_environment()
        if traces is not None:
            tracing.install(traces)  # so publishes made outside the service's components join the traces
        return cls(
            instruments=Instruments.from_provider(meters),
            registry=registry,
            meter_provider=meters,
            tracer_provider=traces,
            tracer=tracing.tracer_of(traces),
        )

    def shutdown(self) -> None:
        """Flush and stop exporting (blocking: up to the exporters' timeouts; run it in a thread)."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

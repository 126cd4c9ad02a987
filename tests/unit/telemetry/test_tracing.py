"""Tracing: the provider from OTEL_*, W3C trace context in NATS headers, and the span shapes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from sandboxd import naming
from sandboxd.telemetry import tracing
from sandboxd.telemetry.environment import otlp_endpoint, resource
from sandboxd.telemetry.testing import Captured, capture

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_ID = int("0af7651916cd43dd8448eb211c80319c", 16)
SPAN_ID = int("b7ad6b7169203331", 16)
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def captured() -> Captured:
    return capture()


def traceparent(span: ReadableSpan) -> str:
    context = span.context
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


@dataclass
class Message:
    subject: str
    headers: dict[str, str] = field(default_factory=dict)
    stream_sequence: int = 1
    num_delivered: int = 1


# --- the provider from the environment -------------------------------------------------------------------------


def test_no_endpoint_means_tracing_off() -> None:
    assert otlp_endpoint("traces") is None
    assert tracing.tracer_provider_from_environment() is None
    assert tracing.tracer_of(None) is None


def test_a_base_endpoint_gets_the_signal_path_and_a_specific_one_is_used_as_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert otlp_endpoint("traces") == "http://collector:4318/v1/traces"
    assert otlp_endpoint("metrics") == "http://collector:4318/v1/metrics"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://tempo:4318/custom")
    assert otlp_endpoint("traces") == "http://tempo:4318/custom"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert otlp_endpoint("traces") is None
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert otlp_endpoint("metrics") is None


def test_an_endpoint_gives_a_provider_that_batches_to_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    provider = tracing.tracer_provider_from_environment()
    assert provider is not None
    try:
        processors = provider._active_span_processor._span_processors
        assert any(isinstance(p, BatchSpanProcessor) for p in processors)
        assert provider.resource.attributes["service.name"] == "sandboxd"
    finally:
        provider.shutdown()


def test_a_publisher_records_without_an_exporter() -> None:
    provider = tracing.tracer_provider_from_environment(record_without_exporter=True)
    assert provider is not None
    tracer = tracing.tracer_of(provider)
    assert tracer is not None
    with tracing.sending("sandbox.create.sb-1", tracer=tracer) as headers:
        assert tracing.TRACEPARENT in headers


def test_service_name_defaults_to_sandboxd_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resource().attributes["service.name"] == "sandboxd"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "sandboxd-eu1")
    assert resource().attributes["service.name"] == "sandboxd-eu1"


# --- W3C trace context in NATS headers -------------------------------------------------------------------------


def test_inject_writes_nothing_without_a_span() -> None:
    assert tracing.inject() == {}


def test_extract_reads_lowercase_and_other_spellings() -> None:
    for key in ("traceparent", "Traceparent", "TRACEPARENT"):
        span = trace.get_current_span(tracing.extract({key: PARENT, "Nats-Msg-Id": "e1"}))
        context = span.get_span_context()
        assert (context.trace_id, context.span_id, context.is_remote) == (TRACE_ID, SPAN_ID, True)


def test_extract_of_nothing_or_garbage_is_a_new_trace() -> None:
    assert not trace.get_current_span(tracing.extract({})).get_span_context().is_valid
    assert not trace.get_current_span(tracing.extract({"traceparent": "nonsense"})).get_span_context().is_valid
    assert not trace.get_current_span(tracing.context_of(None)).get_span_context().is_valid


def test_inject_then_extract_round_trips(captured: Captured) -> None:
    tracer = captured.telemetry.tracer
    assert tracer is not None
    with tracer.start_as_current_span("root") as root:
        headers = tracing.inject({"Nats-Msg-Id": "e1"})
    assert headers["Nats-Msg-Id"] == "e1"
    assert tracing.traceparent_of(headers) == tracing.traceparent_of_span(root)
    extracted = trace.get_current_span(tracing.extract(headers)).get_span_context()
    assert extracted.span_id == root.get_span_context().span_id


def test_template_replaces_the_sandbox_id() -> None:
    assert tracing.template_of("sandbox.create.sb-1") == "sandbox.create.*"
    assert tracing.template_of("sandbox.scale.sb-1") == "sandbox.scale.*"
    assert tracing.template_of("plain") == "plain"


# --- spans -----------------------------------------------------------------------------------------------------


def test_sending_opens_a_producer_span_and_yields_its_traceparent(captured: Captured) -> None:
    with tracing.sending(
        "sandbox.create.sb-1", message_id="e1", sandbox_id="sb-1", tracer=captured.telemetry.tracer
    ) as headers:
        pass
    (span,) = captured.spans()
    assert span.name == "send sandbox.create.*"
    assert span.kind is SpanKind.PRODUCER
    assert dict(span.attributes or {}) == {
        "messaging.system": "nats",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "sandbox.create.sb-1",
        "messaging.destination.template": "sandbox.create.*",
        "messaging.message.id": "e1",
        "sandbox.id": "sb-1",
    }
    assert headers[tracing.TRACEPARENT] == traceparent(span)


def test_sending_without_a_provider_passes_the_current_context_on(captured: Captured) -> None:
    tracer = captured.telemetry.tracer
    assert tracer is not None
    with tracer.start_as_current_span("caller") as caller, tracing.sending("sandbox.scale.sb-1") as headers:
        pass  # the process-wide provider is the no-op one: no span of its own, the caller's context goes out
    assert headers[tracing.TRACEPARENT] == tracing.traceparent_of_span(caller)


def test_processing_spans_are_children_of_their_publishers(captured: Captured) -> None:
    messages = [
        Message("sandbox.create.sb-1", {"traceparent": PARENT, "Nats-Msg-Id": "e1"}, stream_sequence=7),
        Message("sandbox.update.sb-1", {"Nats-Msg-Id": "e2"}, stream_sequence=8, num_delivered=3),
    ]
    with tracing.Processing(captured.telemetry.tracer, messages, sandbox_id="sb-1") as spans:
        assert spans.traceparent(0) == PARENT
        own = spans.traceparent(1)  # no header: the process span's own context
        spans.settle(0, "accepted")
        spans.settle(1, "rejected", error_type="InvalidEvent", description="bad spec")
    first, second = captured.spans()
    assert first.name == "process sandbox.create.*" and first.kind is SpanKind.CONSUMER
    assert first.parent is not None and first.parent.span_id == SPAN_ID
    assert first.context is not None and first.context.trace_id == TRACE_ID
    assert first.attributes is not None
    assert first.attributes["messaging.consumer.group.name"] == naming.EVENTS_CONSUMER
    assert first.attributes["nats.jetstream.sequence.stream"] == 7
    assert first.attributes["sandboxd.intake.verdict"] == "accepted"
    assert second.name == "process sandbox.update.*" and second.parent is None
    assert own == traceparent(second)
    assert second.attributes is not None and second.attributes["nats.jetstream.num_delivered"] == 3
    assert second.status.status_code is StatusCode.ERROR
    assert second.attributes["error.type"] == "InvalidEvent"


def test_processing_with_tracing_off_still_reports_the_publishers_traceparent() -> None:
    messages = [Message("sandbox.create.sb-1", {"traceparent": PARENT}), Message("sandbox.update.sb-1")]
    with tracing.Processing(None, messages, sandbox_id="sb-1") as spans:
        spans.settle(0, "accepted")
        assert spans.traceparent(0) == PARENT
        assert spans.traceparent(1) is None


def test_processing_marks_every_span_when_the_batch_fails(captured: Captured) -> None:
    messages = [Message("sandbox.create.sb-1"), Message("sandbox.update.sb-1")]
    with pytest.raises(RuntimeError), tracing.Processing(captured.telemetry.tracer, messages, sandbox_id="sb-1"):
        raise RuntimeError("store down")
    assert [s.status.status_code for s in captured.spans()] == [StatusCode.ERROR, StatusCode.ERROR]


def test_reconciling_is_a_child_of_the_stored_traceparent_and_stages_nest(captured: Captured) -> None:
    tracer = captured.telemetry.tracer
    with tracing.reconciling(tracer, sandbox_id="sb-1", generation=2, traceparent=PARENT, start_time_ns=1_000) as span:
        with tracing.stage(tracer, "render"):
            pass
        tracing.fail(span, "ApplyUnavailable", "API down")
    render, reconcile = captured.spans()
    assert reconcile.name == "reconcile" and reconcile.start_time == 1_000
    assert reconcile.parent is not None and reconcile.parent.span_id == SPAN_ID
    assert reconcile.attributes is not None and reconcile.attributes["sandbox.id"] == "sb-1"
    assert reconcile.status.status_code is StatusCode.ERROR
    assert render.parent is not None and reconcile.context is not None
    assert render.parent.span_id == reconcile.context.span_id


def test_with_tracing_off_the_span_helpers_do_nothing() -> None:
    with (
        tracing.stage(None, "render") as stage,
        tracing.reconciling(None, sandbox_id="sb-1", generation=1, traceparent=PARENT, start_time_ns=0) as reconcile,
    ):
        assert stage is None and reconcile is None
        tracing.fail(reconcile, "X", "y")


def test_command_tracing_gives_every_publish_a_traceparent() -> None:
    # In a subprocess: it installs a process-wide provider, which would leak into the other tests.
    script = (
        "from sandboxd.telemetry import tracing\n"
        "with tracing.command_tracing():\n"
        "    with tracing.sending('sandbox.create.sb-1', message_id='e1') as headers:\n"
        "        print(headers.get('traceparent', 'none'))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[0-3]\n", done.stdout), done.stdout + done.stderr

"""Traces: a tracer provider from the standard ``OTEL_*`` variables, W3C trace context in NATS headers, and the
few span shapes the service opens.

One trace follows a sandbox from publish to ready::

    send sandbox.create.*            (PRODUCER, the publisher: sandboxctl, a platform service, a test)
    ├── process sandbox.create.*     (CONSUMER, intake; parent taken from the ``traceparent`` header)
    └── reconcile                    (parent = the traceparent the desired state keeps)
        ├── render
        ├── apply | delete
        └── write status

A ``None`` tracer means tracing is off: every helper then does nothing (one ``is None`` check), so the hot
path pays no span work at all when no exporter is configured.

What it deliberately does not do: import nats (headers are a plain ``dict[str, str]``), propagate baggage
(header size and personal data ride along unseen), or put sandbox ids anywhere but span attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Final, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from sandboxd import __version__, naming
from sandboxd.telemetry.environment import check_protocol, flag, otlp_endpoint, resource

log = logging.getLogger(__name__)

INSTRUMENTATION: Final = "sandboxd"
TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"

# Messaging semantic conventions (status "Development"; plain strings: the Python constants are incubating).
SYSTEM: Final = "messaging.system"
OPERATION_TYPE: Final = "messaging.operation.type"
OPERATION_NAME: Final = "messaging.operation.name"
DESTINATION: Final = "messaging.destination.name"
DESTINATION_TEMPLATE: Final = "messaging.destination.template"
MESSAGE_ID: Final = "messaging.message.id"
CONSUMER_GROUP: Final = "messaging.consumer.group.name"
STREAM_SEQUENCE: Final = "nats.jetstream.sequence.stream"
NUM_DELIVERED: Final = "nats.jetstream.num_delivered"
ERROR_TYPE: Final = "error.type"
SANDBOX_ID: Final = "sandbox.id"

_W3C: Final = TraceContextTextMapPropagator()
_OFF: Final[nullcontext[None]] = nullcontext(None)


# --- providers -----------------------------------------------------------------------------------------------


def tracer_provider_from_environment(*, record_without_exporter: bool = False) -> TracerProvider | None:
    """An SDK tracer provider exporting over OTLP/HTTP when an endpoint is set; None (tracing off) otherwise.

    ``record_without_exporter`` is for short-lived publishers (sandboxctl): spans are recorded even with no
    exporter, so a publish still carries a fresh ``traceparent`` the service's spans and logs can join.
    """
    if flag("OTEL_SDK_DISABLED"):
        return None
    endpoint = otlp_endpoint("traces")
    if endpoint is None and not record_without_exporter:
        return None
    provider = TracerProvider(resource=resource())
    if endpoint is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415 - only when exporting
            OTLPSpanExporter,
        )

        check_protocol("traces")
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def tracer_of(provider: trace.TracerProvider | None) -> Tracer | None:
    return provider.get_tracer(INSTRUMENTATION, __version__) if provider is not None else None


def install(provider: TracerProvider) -> bool:
    """Make ``provider`` the process-wide one, unless one is installed already; True if it was installed."""
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return False
    trace.set_tracer_provider(provider)
    return True


@contextmanager
def command_tracing() -> Iterator[None]:
    """Tracing for a short-lived publisher (``sandboxctl``), process-wide for the block, flushed at its end.

    Spans are recorded even with no exporter, so every publish (``publish_event``) carries a fresh
    ``traceparent`` the service's spans and logs join; with an OTLP endpoint set they are exported too.
    """
    provider = tracer_provider_from_environment(record_without_exporter=True)
    if provider is None or not install(provider):
        yield
        return
    try:
        yield
    finally:
        provider.shutdown()


# --- W3C trace context in NATS headers ----------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by lowercase name; other spellings (``Traceparent`` from a non-Python producer) also match."""
    value = headers.get(name)
    if value is None and headers:
        for key, candidate in headers.items():
            if key.lower() == name:
                return candidate
    return value


def traceparent_of(headers: Mapping[str, str]) -> str | None:
    return _header(headers, TRACEPARENT)


def inject(headers: dict[str, str] | None = None, *, context: Context | None = None) -> dict[str, str]:
    """Write the current (or ``context``'s) span as ``traceparent``/``tracestate`` into ``headers``.

    Nothing is written when there is no valid span, so a process with tracing off adds no header of its own.
    """
    carrier: dict[str, str] = {} if headers is None else headers
    _W3C.inject(carrier, context=context)
    return carrier


def extract(headers: Mapping[str, str]) -> Context:
    """The remote parent ``headers`` carry (an empty context when they carry none)."""
    parent = traceparent_of(headers)
    if parent is None:
        return Context()
    carrier = {TRACEPARENT: parent}
    state = _header(headers, TRACESTATE)
    if state is not None:
        carrier[TRACESTATE] = state
    return _W3C.extract(carrier, context=Context())


def context_of(traceparent: str | None) -> Context:
    """A context whose remote parent is ``traceparent`` (empty, i.e. a new trace, when None or malformed)."""
    if not traceparent:
        return Context()
    return _W3C.extract({TRACEPARENT: traceparent}, context=Context())


def traceparent_of_span(span: Span | None) -> str | None:
    if span is None or not span.get_span_context().is_valid:
        return None
    return inject(context=trace.set_span_in_context(span)).get(TRACEPARENT)


def template_of(subject: str) -> str:
    """``sandbox.create.sb-1`` → ``sandbox.create.*``: every subject we use ends with the sandbox id."""
    head, dot, _ = subject.rpartition(".")
    return f"{head}.*" if dot else subject


def messaging_attributes(
    operation: str, subject: str, *, message_id: str | None, sandbox_id: str | None
) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        SYSTEM: "nats",
        OPERATION_TYPE: operation,
        OPERATION_NAME: operation,
        DESTINATION: subject,
        DESTINATION_TEMPLATE: template_of(subject),
    }
    if message_id:
        attributes[MESSAGE_ID] = message_id
    if sandbox_id:
        attributes[SANDBOX_ID] = sandbox_id
    return attributes


# --- spans ---------------------------------------------------------------------------------------------------


def fail(span: Span | None, error_type: str, description: str) -> None:
    """Mark ``span`` failed with a low-cardinality ``error.type`` (an error's ``reason``) and a description."""
    if span is None:
        return
    span.set_attribute(ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, f"{error_type}: {description}"))


@contextmanager
def sending(
    subject: str,
    *,
    message_id: str | None = None,
    sandbox_id: str | None = None,
    tracer: Tracer | None = None,
) -> Iterator[dict[str, str]]:
    """A PRODUCER ``send <template>`` span around one publish; yields the headers that carry it.

    Without ``tracer`` the process-wide one is used (a no-op unless a provider was installed): the yielded
    headers then carry whatever span is current, so a publish inside a reconcile continues its trace.
    """
    chosen = tracer if tracer is not None else trace.get_tracer(INSTRUMENTATION, __version__)
    attributes = messaging_attributes("send", subject, message_id=message_id, sandbox_id=sandbox_id)
    with chosen.start_as_current_span(f"send {template_of(subject)}", kind=SpanKind.PRODUCER, attributes=attributes):
        yield inject()


def stage(tracer: Tracer | None, name: str, **attributes: AttributeValue) -> AbstractContextManager[Span | None]:
    """An INTERNAL child span of the current one (``render``, ``apply``, ``write status``); nothing when off."""
    if tracer is None:
        return _OFF
    return tracer.start_as_current_span(name, attributes=attributes)


def reconciling(
    tracer: Tracer | None, *, sandbox_id: str, generation: int, traceparent: str | None, start_time_ns: int
) -> AbstractContextManager[Span | None]:
    """The ``reconcile`` span: a child of the event that last changed the desired state (its traceparent).

    ``start_time_ns`` is taken before the desired state was read, so the span covers the read too.
    """
    if tracer is None:
        return _OFF
    return tracer.start_as_current_span(
        "reconcile",
        context=context_of(traceparent),
        start_time=start_time_ns,
        attributes={SANDBOX_ID: sandbox_id, "sandbox.generation": generation},
    )


class Message(Protocol):
    """What a ``process`` span needs of a delivered message (deliveries and intake's events have this shape)."""

    @property
    def subject(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def stream_sequence(self) -> int: ...


class Processing:
    """CONSUMER ``process <template>`` spans, one per message of a batch, each a child of its publisher.

    They start together and end together (``with``), after the batch's effect is durable; ``settle`` records
    each message's verdict first. With tracing off (``tracer`` None) nothing is started and ``traceparent``
    still reports the publisher's, which the desired state keeps for the reconcile span.
    """

    __slots__ = ("_messages", "_spans")

    def __init__(
        self,
        tracer: Tracer | None,
        messages: Sequence[Message],
        *,
        sandbox_id: str,
        consumer_group: str = naming.EVENTS_CONSUMER,
    ) -> None:
        self._messages = messages
        self._spans: list[Span] = []
        if tracer is None:
            return
        for message in messages:
            attributes = messaging_attributes(
                "process", message.subject, message_id=message.headers.get("Nats-Msg-Id"), sandbox_id=sandbox_id
            )
            attributes[CONSUMER_GROUP] = consumer_group
            attributes[STREAM_SEQUENCE] = message.stream_sequence
            delivered = getattr(message, "num_delivered", None)
            if isinstance(delivered, int):
                attributes[NUM_DELIVERED] = delivered
            self._spans.append(
                tracer.start_span(
                    f"process {template_of(message.subject)}",
                    context=extract(message.headers),
                    kind=SpanKind.CONSUMER,
                    attributes=attributes,
                )
            )

    def traceparent(self, index: int) -> str | None:
        """The publisher's traceparent of message ``index``, or (when it sent none) its process span's."""
        found = traceparent_of(self._messages[index].headers)
        if found is None and self._spans:
            return traceparent_of_span(self._spans[index])
        return found

    def settle(self, index: int, verdict: str, *, error_type: str | None = None, description: str = "") -> None:
        if not self._spans:
            return
        span = self._spans[index]
        span.set_attribute("sandboxd.intake.verdict", verdict)
        if error_type is not None:
            fail(span, error_type, description)

    def __enter__(self) -> Processing:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: object) -> None:
        for span in self._spans:
            if error is not None and isinstance(error, Exception):
                span.record_exception(error)
                fail(span, str(getattr(error, "reason", type(error).__name__)), str(error))
            span.end()

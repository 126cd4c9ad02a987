"""Metrics: the service's instruments, and the meter provider that feeds Prometheus and, optionally, OTLP.

Instruments, with their attributes and the Prometheus name the exporter derives:

- ``sandboxd.reconcile.duration`` (histogram, s; ``result``): one reconcile pass, read to status written
  [``sandboxd_reconcile_duration_seconds``];
- ``sandboxd.queue.depth`` (gauge): sandboxes waiting for a worker [``sandboxd_queue_depth``];
- ``sandboxd.queue.held`` (gauge): deliveries this process holds, not yet settled;
- ``sandboxd.consumer.lag`` (gauge): events in the stream the shared consumer has not delivered yet;
- ``sandboxd.consumer.ack_pending`` (gauge): events delivered to some replica and not yet settled;
- ``sandboxd.retries`` (counter; ``reason``): retry decisions, a nak with backoff [``sandboxd_retries_total``];
- ``sandboxd.dead_letters`` (counter; ``reason``): events dead-lettered [``sandboxd_dead_letters_total``];
- ``sandboxd.deliveries.settled`` (observable counter; ``action`` ack|nak|term): settlements that succeeded,
  read from the disposition's running counts (nothing recorded per delivery);
- ``sandboxd.apply.errors`` (counter; ``reason``): applier failures;
- ``sandboxd.loop.errors`` (counter; ``loop``, ``error``): failed iterations of a background loop (a fetch
  during a leader election, a resync while NATS reconnects) and unexpected exceptions caught around one event,
  by loop name and exception class [``sandboxd_loop_errors_total``];
- ``sandboxd.idle.scale_downs`` and ``sandboxd.idle.wakes`` (observable counters): the sweeper's idle and wake
  decisions, read from its running counts;
- ``sandboxd.tokens`` (counter; ``outcome`` minted|rotated|failed|revoked): the LLM-gateway token writer's
  mints (a sandbox's first token), rotations (a token replacing one: schedule, changed plan or capabilities, a
  Secret that lost it), failed mints and revokes [``sandboxd_tokens_total``];
- ``sandboxd.sandboxes`` (gauge; ``phase``): sandboxes by status phase, as this process last saw them;
- ``sandboxd.ready`` (gauge): 1 while ``/readyz`` would answer 200, else 0 (the scaler exports it too).

Every series is there from start-up, at zero: the counters with one series without attributes (the labelled
ones come with their first increment), the gauges at 0 until what they read is wired or first sampled, the
settlements by each action, the token outcomes by each outcome, ``sandboxd.sandboxes`` by every phase. So an
alert or a dashboard reads 0 rather than "no data" on a replica that has done nothing yet. The one exception is
the histogram: its series come with the first reconcile (a histogram has no "zero" sample; recording one would skew it).

No sandbox id is ever an attribute (one series per sandbox would not scale); reasons are the error tree's
CamelCase words, a bounded set. Observable gauges read cached values: callbacks are synchronous and run on
every scrape, so they never do I/O (the service refreshes the consumer figures every few seconds).

``sandboxd.sandboxes`` counts the status records this process wrote or read last (every replica touches every
sandbox at each resync), so across replicas take ``max by (phase)``, not ``sum``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Meter, NoOpMeterProvider, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry

from sandboxd import __version__
from sandboxd.models.status import Phase
from sandboxd.telemetry.environment import check_protocol, otlp_endpoint, resource

INSTRUMENTATION: Final = "sandboxd"
RECONCILE_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SETTLEMENTS: Final = ("ack", "nak", "term")
TOKEN_OUTCOMES: Final = ("minted", "rotated", "failed", "revoked")
_REASON: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def bounded(value: str) -> str:
    """An attribute value from a closed vocabulary; anything else becomes ``Other`` (cardinality guard)."""
    return value if _REASON.fullmatch(value) else "Other"


@cache
def _attributes(key: str, value: str) -> dict[str, str]:
    # Attribute dicts are reused: the hot path records with a handful of distinct values.
    return {key: value}


@dataclass
class ConsumerLag:
    """The shared consumer's backlog from the last ``consumer_info`` (None until the first sample)."""

    pending: int | None = None
    ack_pending: int | None = None
    redelivered: int | None = None

    def update(self, *, pending: int, ack_pending: int, redelivered: int) -> None:
        self.pending, self.ack_pending, self.redelivered = pending, ack_pending, redelivered


class PhaseTally:
    """Sandboxes by status phase: the phase each sandbox had in the last status record this process saw."""

    def __init__(self, phases: Iterable[str] = ()) -> None:
        self._phase: dict[str, str] = {}
        self._counts: dict[str, int] = dict.fromkeys(phases, 0)

    def observe(self, sandbox_id: str, phase: str | None) -> None:
        previous = self._phase.get(sandbox_id)
        if previous == phase:
            return
        if previous is not None:
            self._counts[previous] -= 1
        if phase is None:
            self._phase.pop(sandbox_id, None)
            return
        self._phase[sandbox_id] = phase
        self._counts[phase] = self._counts.get(phase, 0) + 1

    def counts(self) -> dict[str, int]:
        """Every phase seen so far, zeros included (a series that drops to 0 stays visible)."""
        return dict(self._counts)


class Instruments:
    """Every instrument the service records, created once from a meter; methods keep call sites one line."""

    def __init__(self, meter: Meter) -> None:
        self.consumer = ConsumerLag()
        self.phases = PhaseTally(str(phase) for phase in Phase)
        self._depth: Callable[[], int] | None = None
        self._settlements: Callable[[], Mapping[str, int]] | None = None
        self._idled: Callable[[], int] | None = None
        self._woken: Callable[[], int] | None = None
        self._held: Callable[[], int] | None = None
        self._ready: Callable[[], bool] | None = None
        self._duration = meter.create_histogram(
            "sandboxd.reconcile.duration",
            unit="s",
            description="Duration of one reconcile pass (read, render, apply, status).",
            explicit_bucket_boundaries_advisory=list(RECONCILE_BUCKETS_S),
        )
        self._retries = meter.create_counter(
            "sandboxd.retries", unit="{retry}", description="Transient failures retried with a backoff."
        )
        self._dead_letters = meter.create_counter(
            "sandboxd.dead_letters", unit="{event}", description="Events dead-lettered, by reason."
        )
        meter.create_observable_counter(
            "sandboxd.deliveries.settled",
            [self._observe_settlements],
            unit="{delivery}",
            description="Deliveries acked, naked or terminated.",
        )
        self._apply_errors = meter.create_counter(
            "sandboxd.apply.errors", unit="{error}", description="Applier failures, by reason."
        )
        self._loop_errors = meter.create_counter(
            "sandboxd.loop.errors",
            unit="{error}",
            description="Failed iterations of background loops and unexpected errors around one event.",
        )
        meter.create_observable_counter(
            "sandboxd.idle.scale_downs",
            [self._observe_scale_downs],
            unit="{sandbox}",
            description="Sandboxes the sweeper decided to scale to zero for inactivity.",
        )
        meter.create_observable_counter(
            "sandboxd.idle.wakes",
            [self._observe_wakes],
            unit="{sandbox}",
            description="Idle sandboxes the sweeper woke (activity).",
        )
        meter.create_observable_gauge(
            "sandboxd.queue.depth", [self._observe_depth], unit="{sandbox}", description="Sandboxes waiting."
        )
        meter.create_observable_gauge(
            "sandboxd.queue.held", [self._observe_held], unit="{delivery}", description="Deliveries not settled."
        )
        meter.create_observable_gauge(
            "sandboxd.consumer.lag",
            [self._observe_lag],
            unit="{event}",
            description="Events in the stream not yet delivered to the shared consumer.",
        )
        meter.create_observable_gauge(
            "sandboxd.consumer.ack_pending",
            [self._observe_ack_pending],
            unit="{event}",
            description="Events delivered to some replica and not yet settled.",
        )
        meter.create_observable_gauge(
            "sandboxd.sandboxes", [self._observe_phases], unit="{sandbox}", description="Sandboxes by phase."
        )
        meter.create_observable_gauge(
            "sandboxd.ready", [self._observe_ready], description="1 while this process is ready (/readyz 200)."
        )

        self._tokens = meter.create_counter(
            "sandboxd.tokens", unit="{token}", description="LLM-gateway tokens minted, rotated, failed, revoked."
        )

        for counter in (self._retries, self._dead_letters, self._apply_errors, self._loop_errors):
            counter.add(0)  # present at zero from start-up
        for outcome in TOKEN_OUTCOMES:
            self._tokens.add(0, {"outcome": outcome})

    @classmethod
    def from_provider(cls, provider: MeterProvider | NoOpMeterProvider) -> Instruments:
        return cls(provider.get_meter(INSTRUMENTATION, __version__))

    # --- recording ----------------------------------------------------------------------------------------

    def reconciled(self, seconds: float, result: str) -> None:
        self._duration.record(seconds, _attributes("result", result))

    def retried(self, reason: str) -> None:
        self._retries.add(1, _attributes("reason", bounded(reason)))

    def dead_lettered(self, reason: str) -> None:
        self._dead_letters.add(1, _attributes("reason", bounded(reason)))

    def apply_failed(self, reason: str) -> None:
        self._apply_errors.add(1, _attributes("reason", bounded(reason)))

    def loop_failed(self, loop: str, error: str) -> None:
        self._loop_errors.add(1, {"loop": bounded(loop.replace(" ", "-")), "error": bounded(error)})

    def token_event(self, outcome: str) -> None:
        """One of ``TOKEN_OUTCOMES`` from the token writer."""
        self._tokens.add(1, {"outcome": outcome if outcome in TOKEN_OUTCOMES else "other"})

    def watch_queue(self, *, depth: Callable[[], int], held: Callable[[], int]) -> None:
        """Where the queue gauges read from (the keyed queue registers itself)."""
        self._depth, self._held = depth, held

    def watch_settlements(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Where the settlement counter reads from (the disposition's running counts by action)."""
        self._settlements = counts

    def watch_idle(self, *, idled: Callable[[], int], woken: Callable[[], int]) -> None:
        """Where the idle counters read from (the sweeper's running counts of its decisions)."""
        self._idled, self._woken = idled, woken

    def watch_ready(self, ready: Callable[[], bool]) -> None:
        """Where the readiness gauge reads from (the process's ``Health``)."""
        self._ready = ready

    # --- observable callbacks (synchronous, no I/O) ---------------------------------------------------------

    def _observe_depth(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._depth() if self._depth is not None else 0)]

    def _observe_held(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._held() if self._held is not None else 0)]

    def _observe_settlements(self, _options: CallbackOptions) -> Iterable[Observation]:
        counts = self._settlements() if self._settlements is not None else {}
        return [Observation(counts.get(action, 0), {"action": action}) for action in SETTLEMENTS]

    def _observe_scale_downs(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._idled() if self._idled is not None else 0)]

    def _observe_wakes(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._woken() if self._woken is not None else 0)]

    def _observe_lag(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.consumer.pending or 0)]  # 0 until the first sample

    def _observe_ack_pending(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.consumer.ack_pending or 0)]

    def _observe_ready(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(1 if self._ready is not None and self._ready() else 0)]

    def _observe_phases(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(count, {"phase": phase}) for phase, count in sorted(self.phases.counts().items())]


def noop_instruments() -> Instruments:
    """Instruments that record nothing: the default of every component built without telemetry."""
    return Instruments.from_provider(NoOpMeterProvider())


class _ServiceMeterProvider(MeterProvider):
    """The SDK's meter provider, except that ``OTEL_SDK_DISABLED`` does not turn its meters into no-ops.

    The SDK reads ``OTEL_SDK_DISABLED=true`` as "record nothing", which would leave ``/metrics`` without a
    single ``sandboxd_*`` series. Here that variable means "export nothing over OTLP" (``otlp_endpoint`` is
    None then, so no exporting reader is added): the Prometheus endpoint is the service's own and stays.
    """

    def __init__(self, *, metric_readers: Sequence[MetricReader], resource: Resource) -> None:
        super().__init__(metric_readers=metric_readers, resource=resource)
        self._disabled = False  # the SDK's flag (private; tests/unit/telemetry/test_http_endpoint.py pins it)


def meter_provider(registry: CollectorRegistry, *, readers: Sequence[MetricReader] = ()) -> MeterProvider:
    """A meter provider read by Prometheus (on ``registry``), plus OTLP/HTTP when an endpoint is set.

    ``OTEL_SDK_DISABLED=true`` turns the OTLP export off, never the Prometheus reader.
    """
    every: list[MetricReader] = [PrometheusMetricReader(registry=registry), *readers]
    endpoint = otlp_endpoint("metrics")
    if endpoint is not None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415 - only when exporting
            OTLPMetricExporter,
        )

        check_protocol("metrics")
        every.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint)))
    return _ServiceMeterProvider(metric_readers=every, resource=resource())

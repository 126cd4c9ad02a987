"""The scaler process's instruments: the same OTel meter provider and Prometheus reader as the reconciler's.

Instruments, with the Prometheus name the exporter derives (counters gain ``_total``):

- ``sandbox_controller.idle_timeout_events`` (counter; ``namespace``): idle scale-downs performed (upstream's
  name) [``sandbox_controller_idle_timeout_events_total``];
- ``sandbox_controller.idle_wake_events`` (counter; ``namespace``, ``reason`` Active|Resumed): scale-ups out of
  idleness or suspension [``sandbox_controller_idle_wake_events_total``];
- ``sandboxd.scale_commands`` (counter; ``reason``, ``outcome``): commands settled, by the contract's reason
  word and what happened (scaled, unchanged, stale, gone, retry, failed, refused) [``sandboxd_scale_commands_total``];
- ``sandboxd.scaler.loop_errors`` (counter; ``loop``, ``error``): failed iterations of the scaler's loops, by
  exception class [``sandboxd_scaler_loop_errors_total``];
- ``sandboxd.ready`` (gauge): 1 while ``/readyz`` would answer 200, else 0 (the reconciler's has the same name,
  so one alert covers both processes) [``sandboxd_ready``].

Every series is there at zero from start-up: every (reason, outcome) pair of the closed vocabularies the
scaler passes in, and one series without attributes for the counters keyed by a namespace or an error class
(an open set), so a dashboard or an alert reads 0, not "no data", before the first command.

What it does not do: know the vocabularies (``app.scaler`` passes them in; telemetry sits below reconcile), or
serve HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from opentelemetry.metrics import CallbackOptions, Meter, NoOpMeterProvider, Observation
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry

from sandboxd import __version__
from sandboxd.telemetry.metrics import INSTRUMENTATION, bounded, meter_provider


class ScalerInstruments:
    """Every instrument ``sandboxd scaler`` records, created (at zero) once from a meter."""

    def __init__(self, meter: Meter, *, reasons: Iterable[str] = (), outcomes: Iterable[str] = ()) -> None:
        self._idle_timeouts = meter.create_counter(
            "sandbox_controller.idle_timeout_events",
            unit="{sandbox}",
            description="Sandboxes scaled to zero for inactivity (one per scale-down performed).",
        )
        self._wakes = meter.create_counter(
            "sandbox_controller.idle_wake_events",
            unit="{sandbox}",
            description="Sandboxes scaled back up out of idleness (reason Active) or suspension (reason Resumed).",
        )
        self._commands = meter.create_counter(
            "sandboxd.scale_commands",
            unit="{command}",
            description="Scale commands the scaler settled, by reason and outcome (scaled, unchanged, stale, gone, "
            "retry, failed, refused: it named a workload other than its sandbox's pty-server).",
        )
        self._loop_errors = meter.create_counter(
            "sandboxd.scaler.loop_errors",
            unit="{error}",
            description="Failed iterations of the scaler's loops (a fetch during a leader election, a reconnect).",
        )
        self._ready: Callable[[], bool] | None = None
        meter.create_observable_gauge(
            "sandboxd.ready", [self._observe_ready], description="1 while this process is ready (/readyz 200)."
        )
        for counter in (self._idle_timeouts, self._wakes, self._loop_errors):
            counter.add(0)
        outcomes = list(outcomes)
        for reason in reasons:
            for outcome in outcomes:
                self._commands.add(0, {"reason": reason, "outcome": outcome})
        if not outcomes:
            self._commands.add(0)

    @classmethod
    def from_provider(
        cls, provider: MeterProvider | NoOpMeterProvider, *, reasons: Iterable[str] = (), outcomes: Iterable[str] = ()
    ) -> ScalerInstruments:
        return cls(provider.get_meter(INSTRUMENTATION, __version__), reasons=reasons, outcomes=outcomes)

    def watch_ready(self, ready: Callable[[], bool]) -> None:
        """Where the readiness gauge reads from (the process's ``Health``)."""
        self._ready = ready

    def _observe_ready(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(1 if self._ready is not None and self._ready() else 0)]

    def command_settled(self, reason: str, outcome: str) -> None:
        self._commands.add(1, {"reason": bounded(reason), "outcome": bounded(outcome)})

    def idled(self, namespace: str) -> None:
        self._idle_timeouts.add(1, {"namespace": bounded(namespace)})

    def woke(self, namespace: str, reason: str) -> None:
        self._wakes.add(1, {"namespace": bounded(namespace), "reason": bounded(reason)})

    def loop_failed(self, loop: str, error: str) -> None:
        self._loop_errors.add(1, {"loop": bounded(loop.replace(" ", "-")), "error": bounded(error)})


def noop_scaler_instruments() -> ScalerInstruments:
    """Scaler instruments that record nothing (a worker built without telemetry, in unit tests)."""
    return ScalerInstruments.from_provider(NoOpMeterProvider())


@dataclass(frozen=True)
class ScalerTelemetry:
    """The scaler's instruments and the Prometheus registry they feed (``/metrics`` serves it)."""

    instruments: ScalerInstruments
    registry: CollectorRegistry
    meter_provider: MeterProvider

    @classmethod
    def from_environment(cls, *, reasons: Iterable[str], outcomes: Iterable[str]) -> ScalerTelemetry:
        """Read by Prometheus, and pushed over OTLP/HTTP when an endpoint is set (as the reconciler's)."""
        registry = CollectorRegistry()
        provider = meter_provider(registry)
        instruments = ScalerInstruments.from_provider(provider, reasons=reasons, outcomes=outcomes)
        return cls(instruments=instruments, registry=registry, meter_provider=provider)

    def shutdown(self) -> None:
        """Flush and stop exporting (blocking: run it in a thread)."""
        self.meter_provider.shutdown()

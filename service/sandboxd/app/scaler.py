"""The sibling scaler process (the idle lifecycle's sweeper half inside the service is ``app.idle``).

``ScalerProcess`` is ``sandboxd scaler``: it consumes SANDBOX_SCALE through the durable scaler consumer,
  carries out each command (``reconcile.scaling.execute_scale``) against the StatefulSet's ``scale`` subresource,
  and reports what happened to the runtime's disposition, which decides like for any event: ack after success
  (or a skip), nak with backoff on a transient failure or an unexpected exception, dead-letter then term on a
  permanent one or once deliveries run out. A failed fetch (a leader election, a reconnect) is retried with a
  growing pause (``runtime.loops``); only a signal or a connection closed for good ends the process.

Concurrency (scaler): one fetch loop; a fetched batch is split by sandbox, sandboxes are scaled in parallel
(``SANDBOXD_SCALER_CONCURRENCY``) and one sandbox's commands in stream order. Shutdown: no new fetch after
``stop``; the batch in hand finishes; the connection drains so every ack is flushed.

Probes (``app.http``, on ``SANDBOXD_SCALER_METRICS_HOST``/``SANDBOXD_SCALER_METRICS_PORT``, port 0 = a free one):
``/healthz``; ``/readyz``, 200 while NATS is connected, the consumer bound, the Kubernetes scale target connected
and no stop asked for, else 503 naming what is missing; served from before the connect to after the drain.
Start-up order does not matter: the Kubernetes API server (``GET /version``), then NATS, are retried with backoff
until they answer (``app.starting.reach``), /readyz naming the last failure meanwhile.

Metrics (``sandboxd.telemetry.scaling``: OTel instruments read by Prometheus, pushed over OTLP when an endpoint
is set, like the reconciler's; served on ``/metrics`` of that endpoint, every series at zero from start-up):
``sandbox_controller_idle_timeout_events_total{namespace}`` (upstream's name: one per idle scale-down
performed), ``sandbox_controller_idle_wake_events_total{namespace,reason}`` (scale-ups out of idle or
suspension), ``sandboxd_scale_commands_total{reason,outcome}`` (``outcome="refused"``: a command naming a
workload other than its sandbox's pty-server, dead-lettered; ``reason`` is one of the contract's four words)
and ``sandboxd_scaler_loop_errors_total{loop,error}``.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Final

import anyio
import prometheus_client
from nats.aio.client import Client
from pydantic import ValidationError

from sandboxd import naming
from sandboxd.adapters.jetstream.activity import (
    bind_scale_commands,
    scale_dead_letters,
)
from sandboxd.adapters.jetstream.connection import connect
from sandboxd.adapters.jetstream.stores import KvStore, open_bucket
from sandboxd.app.http import Health, HealthEndpoint, broker_check
from sandboxd.app.starting import reach
from sandboxd.errors import InvalidEvent, SandboxdError
from sandboxd.models.activity import ScaleCommand
from sandboxd.models.base import describe
from sandboxd.models.bounds import quote
from sandboxd.models.desired import DesiredState
from sandboxd.reconcile.idle import Action
from sandboxd.reconcile.ports import Delivery, ScaleTarget, Store
from sandboxd.reconcile.scaling import REASONS, TARGET_REFUSED, ScaleOutcome, ScaleResult, execute_scale
from sandboxd.runtime.disposition import DONE, Disposition, Outcome
from sandboxd.runtime.loops import LoopGuard, until_done
from sandboxd.runtime.retry import Backoff
from sandboxd.settings import (
    ApplierSettings,
    NatsSettings,
    TopologySettings,
    WorkerSettings,
    load_groups,
)
from sandboxd.settings.fields import Group
from sandboxd.settings.idle import ScalerSettings
from sandboxd.telemetry.scaling import ScalerInstruments, ScalerTelemetry, noop_scaler_instruments

if TYPE_CHECKING:
    from sandboxd.adapters.kubernetes.scaling import StatefulSetScaler

log = logging.getLogger(__name__)

# --- metrics ------------------------------------------------------------------------------------------------

#: Every outcome ``sandboxd_scale_commands_total`` counts: what ``execute_scale`` returns, and the failures.
OUTCOMES: Final = (*(outcome.value for outcome in ScaleOutcome), "retry", "failed", "refused")


def scaler_telemetry() -> ScalerTelemetry:
    """The scaler's metrics, every (reason, outcome) series at zero from start-up."""
    return ScalerTelemetry.from_environment(reasons=REASONS.values(), outcomes=OUTCOMES)


def count(metrics: ScalerInstruments, command: ScaleCommand, result: ScaleResult) -> None:
    metrics.command_settled(command.reason, result.outcome.value)
    if result.outcome is not ScaleOutcome.SCALED or result.replicas is None or result.previous is None:
        return
    if command.reason == REASONS[Action.IDLE] and result.replicas == 0:
        metrics.idled(command.namespace)
    elif result.replicas > result.previous and command.reason in (REASONS[Action.WAKE], REASONS[Action.RESUME]):
        metrics.woke(command.namespace, command.reason)


# --- the service's half -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScalerConfig:
    """What ``sandboxd scaler`` reads: NATS, the consumer's limits, backoff, the cluster and its own group."""

    nats: NatsSettings
    topology: TopologySettings
    worker: WorkerSettings
    applier: ApplierSettings
    scaler: ScalerSettings

    @classmethod
    def from_environment(cls) -> ScalerConfig:
        """Every group from the environment; every invalid setting named at once (``load_groups``)."""
        groups: dict[str, type[Group]] = {
            "nats": NatsSettings,
            "topology": TopologySettings,
            "worker": WorkerSettings,
            "applier": ApplierSettings,
            "scaler": ScalerSettings,
        }
        return cls(**load_groups(groups))


class ScaleWorker:
    """Carries out fetched commands and settles each delivery exactly once."""

    def __init__(
        self,
        *,
        desired: Store[DesiredState],
        target: ScaleTarget,
        disposition: Disposition,
        concurrency: int,
        metrics: ScalerInstruments | None = None,
    ) -> None:
        self._desired = desired
        self._target = target
        self._disposition = disposition
        self._limit = anyio.CapacityLimiter(concurrency)
        self._metrics = metrics or noop_scaler_instruments()

    async def handle(self, batch: Sequence[Delivery]) -> None:
        by_sandbox: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in sorted(batch, key=lambda d: d.stream_sequence):
            by_sandbox[delivery.subject].append(delivery)
        async with anyio.create_task_group() as tg:
            for subject, deliveries in by_sandbox.items():
                tg.start_soon(self._serially, deliveries, name=f"scale-{subject}")

    async def _serially(self, deliveries: list[Delivery]) -> None:
        async with self._limit:
            for delivery in deliveries:
                await self.handle_one(delivery)

    async def handle_one(self, delivery: Delivery) -> None:
        """Carry out one command and report what happened; the disposition decides its fate."""
        command: ScaleCommand | None = None
        try:
            command = self._command_of(delivery)
            result = await execute_scale(command, desired=self._desired, target=self._target)
        except Exception as exc:  # reported as this command's outcome, never raised
            outcome = Outcome.failed(exc, where="the scale command")
            if not isinstance(exc, SandboxdError):
                log.error("scale command on %s raised %s", delivery.subject, exc.__class__.__name__, exc_info=exc)
            elif command is not None:
                log.warning("scale command %s: %s", command.command_id, exc.message)
            if command is not None:
                refused = isinstance(exc, SandboxdError) and exc.reason == TARGET_REFUSED
                self._metrics.command_settled(
                    command.reason, "retry" if outcome.retried else "refused" if refused else "failed"
                )
            await self._disposition.settle([delivery], outcome)
            return
        count(self._metrics, command, result)
        log.info(
            "scale command %s (%s → %s replicas): %s",
            command.command_id,
            command.reason,
            result.replicas,
            result.outcome.value,
        )
        await self._disposition.settle([delivery], DONE)

    @staticmethod
    def _command_of(delivery: Delivery) -> ScaleCommand:
        try:
            command = ScaleCommand.model_validate_json(delivery.data)
        except ValidationError as exc:
            raise InvalidEvent(f"invalid scale command: {describe(exc)}") from exc
        if naming.scale_subject(command.sandbox_id) != delivery.subject:
            raise InvalidEvent(f"command for {command.sandbox_id} arrived on {quote(delivery.subject)}")
        return command


class ScalerProcess:
    """``sandboxd scaler``: run until ``stop`` is set, then finish the batch in hand and drain."""

    def __init__(
        self, config: ScalerConfig, *, target: ScaleTarget | None = None, telemetry: ScalerTelemetry | None = None
    ) -> None:
        self.config = config
        self._target = target
        self.health = Health(target_reachable=False, details={"target": "Kubernetes API server not reached yet"})
        self.endpoint: HealthEndpoint | None = None
        self.worker: ScaleWorker | None = None
        self.disposition: Disposition | None = None
        self._owns_telemetry = telemetry is None
        self.telemetry = telemetry or scaler_telemetry()
        self.telemetry.instruments.watch_ready(lambda: self.health.ready)
        self.guard = LoopGuard("scaler", record=self.telemetry.instruments.loop_failed)
        self._starting = LoopGuard("scaler start-up", record=self.telemetry.instruments.loop_failed)

    async def run(self, stop: anyio.Event) -> None:
        scaler = self.config.scaler
        endpoint = HealthEndpoint(
            readiness=self.health,
            registries=[self.telemetry.registry, prometheus_client.REGISTRY],
            host=scaler.metrics_host,
            port=scaler.metrics_port,
            variables="SANDBOXD_SCALER_METRICS_HOST/SANDBOXD_SCALER_METRICS_PORT",
        )
        try:
            async with endpoint, anyio.create_task_group() as tg:
                self.endpoint = endpoint
                tg.start_soon(self._drain_on, stop, name="readiness-on-stop")
                await self._run(stop)
                tg.cancel_scope.cancel()
        finally:
            if self._owns_telemetry:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.telemetry.shutdown)

    async def _drain_on(self, stop: anyio.Event) -> None:
        """/readyz says "shutting down" as soon as a stop is asked for, not once the batch in hand is done."""
        await stop.wait()
        self.health.draining = True

    async def _run(self, stop: anyio.Event) -> None:
        config = self.config
        target = self._target
        owned: StatefulSetScaler | None = None
        nc: Client | None = None
        try:
            if target is None:
                # Imported here: only this process needs kubernetes_asyncio, not every importer of this module.
                from sandboxd.adapters.kubernetes.scaling import StatefulSetScaler  # noqa: PLC0415

                connecting = partial(
                    StatefulSetScaler.connect, config.applier, field_manager=config.scaler.field_manager
                )
                target = owned = await reach(connecting, check="target", health=self.health, guard=self._starting)
            self.health.target_reachable = True
            nc = await reach(partial(connect, config.nats), check="nats", health=self.health, guard=self._starting)
            self.health.connected = True
            await self._consume(nc, target, stop)
        finally:
            self.health.draining = True
            with anyio.CancelScope(shield=True):
                if nc is not None:
                    try:
                        await nc.drain()
                    except Exception:  # noqa: BLE001 - draining a reconnecting connection fails; closing is enough
                        await nc.close()
                self.health.connected = False
                if owned is not None:
                    with contextlib.suppress(Exception):
                        await owned.aclose()

    async def _consume(self, nc: Client, target: ScaleTarget, stop: anyio.Event) -> None:
        config = self.config
        js = nc.jetstream()
        source = await until_done(partial(bind_scale_commands, js), self.guard)
        disposition = self.disposition = Disposition(
            dead_letters=scale_dead_letters(js),
            backoff=Backoff(config.worker.retry_base_s, config.worker.retry_cap_s),
            max_deliver=config.topology.max_deliver,
        )
        desired = KvStore(await until_done(partial(open_bucket, js, naming.DESIRED_BUCKET), self.guard), DesiredState)
        worker = self.worker = ScaleWorker(
            desired=desired,
            target=target,
            disposition=disposition,
            concurrency=config.scaler.concurrency,
            metrics=self.telemetry.instruments,
        )
        self.health.consumer_bound = True
        guard = self.guard
        self.health.checks["jetstream"] = broker_check(guard)
        log.info("scaler consuming %s/%s", naming.SCALE_STREAM, naming.SCALE_CONSUMER)
        try:
            while not stop.is_set():
                try:
                    batch = await source.fetch(config.scaler.fetch_batch, config.scaler.fetch_timeout_s)
                except Exception as exc:  # noqa: BLE001 - a leader election or a reconnect: fetch again, later
                    self.health.connected = nc.is_connected
                    await guard.failed(exc)
                    continue
                guard.succeeded()
                self.health.connected = nc.is_connected  # a fetch ends at least every SANDBOXD_SCALER_FETCH_SECONDS
                await worker.handle(batch)
        finally:
            # Unsubscribed before the connection drains: a pull subscription left open can hold the drain
            # for its whole timeout (see adapters.jetstream.advisories).
            with anyio.CancelScope(shield=True):
                await source.close()
            self.health.consumer_bound = False

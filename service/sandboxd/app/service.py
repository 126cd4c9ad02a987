"""The reconciler service: connect, provision the topology, then run intake, the keyed queue and resync.

Structured concurrency: every loop is a named task in one task group. ``run(stop)`` returns after a clean
shutdown: stop fetching, hand back what has not started, let in-flight reconciles finish within the grace,
then drain the NATS connection so every ack is flushed.

``/healthz``, ``/readyz`` and ``/metrics`` (``app.http``) are served for the whole of ``run``, from before the
connect to after the drain, so probes get an answer (503) while NATS is being reached and while work drains. A
monitor task refreshes, every few seconds, the consumer's backlog (the lag gauges), whether the connection is
up and, for an applier that can tell (``Reachable``), whether its target answers.

What ends ``run``: the stop event (a signal), or a NATS connection that closed for good (the monitor raises
``BrokerUnavailable``). Nothing else: the first connect (NATS not up yet, or refusing the credentials: /readyz
names why, ``app.starting``) and start-up steps that fail transiently (a leader election, a replica
racing another to create the topology, ``sandboxd init`` not run yet) are retried (``runtime.loops.until_done``);
every loop outlives a failed iteration (``runtime.loops.LoopGuard``, counted in ``sandboxd.loop.errors``); and
whatever goes wrong with one event is that event's outcome (``runtime.disposition``), never the process's.
/readyz turns 503 when the connection is down, or when the fetch loop has failed for longer than a moment.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import anyio
import prometheus_client
from nats.aio.client import Client
from nats.js import JetStreamContext

from sandboxd import naming
from sandboxd.adapters.jetstream.advisories import REASON as MAX_DELIVERIES
from sandboxd.adapters.jetstream.advisories import DeadLetterMover, Stranded
from sandboxd.adapters.jetstream.connection import connect
from sandboxd.adapters.jetstream.deliveries import EventSource, JetStreamEventLog
from sandboxd.adapters.jetstream.publishing import JetStreamDeadLetters
from sandboxd.adapters.jetstream.stores import KvStore
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.app.http import Health, HealthEndpoint, broker_check
from sandboxd.app.idle import command_outbox, idle_lifecycle
from sandboxd.app.starting import reach
from sandboxd.app.tenants import TenantBridge
from sandboxd.app.tokens import feeds_revisions, token_loop, writer_in_service
from sandboxd.errors import BrokerUnavailable, PermanentError, SandboxdError
from sandboxd.models.desired import DesiredState, OwnerClaim
from sandboxd.models.status import SandboxStatus
from sandboxd.naming import SandboxId
from sandboxd.reconcile import statuses
from sandboxd.reconcile.intake import Intake, sandbox_id_of
from sandboxd.reconcile.ports import Applier, Observer, Reachable
from sandboxd.reconcile.reconciler import Reconciler, Renderer
from sandboxd.reconcile.statuses import StatusWriter
from sandboxd.runtime.consumer import Consumer
from sandboxd.runtime.disposition import Disposition
from sandboxd.runtime.loops import LoopGuard, until_done
from sandboxd.runtime.queueing import Backlog, KeyedQueue
from sandboxd.runtime.resync import resync_forever
from sandboxd.runtime.retry import Backoff
from sandboxd.settings import Settings
from sandboxd.telemetry.providers import Telemetry

log = logging.getLogger(__name__)

#: How often the monitor samples the consumer's backlog, the connection and the apply target, s.
MONITOR_INTERVAL_S = 5.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Stores:
    desired: KvStore[DesiredState]
    status: KvStore[SandboxStatus]
    owners: KvStore[OwnerClaim]

    @classmethod
    async def open(cls, js: JetStreamContext, *, in_flight: int) -> Stores:
        """``in_flight``: how many sandboxes can have events between intake and their pass (max ack pending);
        the desired store remembers that many, so a pass never has to read back what intake just wrote (the
        records are the very objects the idle sweeper's feed keeps, so this costs little memory)."""
        return cls(
            desired=await KvStore.open(js, naming.DESIRED_BUCKET, DesiredState, remember=in_flight),
            status=await KvStore.open(js, naming.STATUS_BUCKET, SandboxStatus),
            owners=await KvStore.open(js, naming.OWNERS_BUCKET, OwnerClaim),
        )


class Service:
    def __init__(
        self,
        settings: Settings,
        *,
        applier: Applier,
        render: Renderer,
        clock: Callable[[], datetime] = utc_now,
        health: Health | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.applier = applier
        self.render = render
        self.clock = clock
        self.health = health or Health()
        self._owns_telemetry = telemetry is None
        self.telemetry = telemetry or Telemetry.from_environment()
        self.telemetry.instruments.watch_ready(lambda: self.health.ready)
        self.queue: KeyedQueue | None = None
        self.mover: DeadLetterMover | None = None
        self.consumer: Consumer | None = None
        self.nc: Client | None = None
        self.endpoint: HealthEndpoint | None = None
        self.mints_tokens = writer_in_service(settings)  # a ConfigurationError now, not after connecting

    async def run(self, stop: anyio.Event) -> None:
        worker = self.settings.worker
        endpoint = HealthEndpoint(
            readiness=self.health,
            registries=[self.telemetry.registry, prometheus_client.REGISTRY],
            host=worker.health_host,
            port=worker.health_port,
            variables="SANDBOXD_HEALTH_HOST/SANDBOXD_HEALTH_PORT",
        )
        if isinstance(self.applier, Reachable):
            self.health.target_reachable = False  # until it first answers
        async with endpoint:
            self.endpoint = endpoint
            try:
                await self._run(stop)
            finally:
                if self._owns_telemetry:
                    await anyio.to_thread.run_sync(self.telemetry.shutdown)

    def _guard(self, name: str) -> LoopGuard:
        return LoopGuard(name, record=self.telemetry.instruments.loop_failed)

    def _connection_changed(self, connected: bool) -> None:
        self.health.connected = connected

    async def _run(self, stop: anyio.Event) -> None:
        connecting = partial(connect, self.settings.nats, on_change=self._connection_changed)
        nc = self.nc = await reach(connecting, check="nats", health=self.health, guard=self._guard("connect"))
        self.health.connected = True
        try:
            js = nc.jetstream()
            await until_done(partial(ensure_topology, js, self.settings.topology), self._guard("topology"))
            await self._serve(js, stop)
        finally:
            self.health.draining = True
            try:
                await nc.drain()
            except Exception:  # noqa: BLE001 - draining a reconnecting connection fails; closing is enough
                await nc.close()
            await self.applier.aclose()
            self.health.connected = False

    async def _serve(self, js: JetStreamContext, stop: anyio.Event) -> None:
        worker, topology = self.settings.worker, self.settings.topology
        starting = self._guard("start-up")
        stores = await until_done(partial(Stores.open, js, in_flight=topology.max_ack_pending), starting)
        metrics, tracer = self.telemetry.instruments, self.telemetry.tracer
        status = StatusWriter(stores.status, metrics=metrics, retention_s=topology.status_retention_s)
        intake = Intake(
            desired=stores.desired,
            owners=stores.owners,
            status=status,
            clock=self.clock,
            events=JetStreamEventLog(js),
            tracer=tracer,
        )
        # Suspend and resume commands come from the reconcile passes; with the sweeper off (nothing idles, and
        # nothing would resend a command that failed to publish) none are sent and the apply alone scales.
        commands = command_outbox(js)
        reconciler = Reconciler(
            desired=stores.desired,
            owners=stores.owners,
            status=status,
            applier=self.applier,
            settings=self.settings.runtime,
            render=self.render,
            clock=self.clock,
            tracer=tracer,
            metrics=metrics,
            token_revisions=feeds_revisions(self.settings.tokens),
            commands=commands if self.settings.idle.sweeper else None,
        )
        disposition = Disposition(
            dead_letters=JetStreamDeadLetters(js),
            backoff=Backoff(worker.retry_base_s, worker.retry_cap_s),
            max_deliver=topology.max_deliver,
            metrics=metrics,
        )
        backlog = Backlog()
        queue = self.queue = KeyedQueue(
            handler=reconciler.reconcile,
            disposition=disposition,
            concurrency=worker.concurrency,
            heartbeat_s=topology.ack_wait_s / 3,
            backlog=backlog,
            hold_cap_s=worker.catch_up_hold_s,
            metrics=metrics,
            on_unexpected=lambda exc: metrics.loop_failed("reconcile", exc.__class__.__name__),
        )
        source = await until_done(partial(EventSource.bind, js), starting)
        fetching = self._guard("consume")
        consumer = self.consumer = Consumer(
            source=source,
            intake=intake,
            queue=queue,
            disposition=disposition,
            max_held=topology.max_ack_pending,
            backlog=backlog,
            guard=fetching,
        )
        mover = self.mover = await until_done(
            partial(DeadLetterMover.bind, js, on_stranded=self._stranded_status(status)), starting
        )
        self.health.checks["jetstream"] = broker_check(fetching)
        self.health.consumer_bound = True
        consumed = anyio.Event()

        async def consume() -> None:
            try:
                await consumer.run()
            finally:
                consumed.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(queue.run, name="keyed-queue")
            resync = partial(
                resync_forever, stores.desired, queue, interval_s=worker.resync_interval_s, guard=self._guard("resync")
            )
            tg.start_soon(resync, name="resync")
            tg.start_soon(consume, name="consume")
            tg.start_soon(self._monitor, js, stop, name="monitor")
            tg.start_soon(partial(mover.run, guard=self._guard("dead-letter mover")), name="dead-letter-mover")
            if isinstance(self.applier, Observer):
                observe = partial(self.applier.observe, self._kicker(queue))
                watching = partial(self._guard("observe target").forever, observe, every_s=lambda: MONITOR_INTERVAL_S)
                tg.start_soon(watching, name="observe-target")
            self.idle = idle_lifecycle(
                js,
                self.settings,
                desired=stores.desired,
                status=status,
                commands=commands,
                kick=self._kicker(queue),
                clock=self.clock,
            )
            stats = self.idle.sweeper.stats
            metrics.watch_idle(idled=lambda: stats.idled, woken=lambda: stats.woken)
            tg.start_soon(partial(self.idle.run, record=metrics.loop_failed), name="idle-lifecycle")
            await self._start_tokens(tg, stores, status, queue)
            self._start_tenant_bridge(tg, js)
            await stop.wait()
            self.health.draining = True
            log.info("stopping: no more fetches; %d deliveries held", queue.held)
            consumer.stop()
            await consumed.wait()  # the fetch in progress ends within its timeout; its batch is admitted
            await queue.close(worker.shutdown_grace_s)
            tg.cancel_scope.cancel()
        await source.close()
        self.health.consumer_bound = False

    async def _start_tokens(
        self, tg: anyio.abc.TaskGroup, stores: Stores, status: StatusWriter, queue: KeyedQueue
    ) -> None:
        """The token writer's loop, when this process mints (``app.tokens``); a mint kicks the sandbox's pass."""
        if not self.mints_tokens:
            return
        tokens = await token_loop(
            self.settings,
            desired=stores.desired,
            status=status,
            clock=self.clock,
            kick=self._kicker(queue),
            metrics=self.telemetry.instruments,
        )
        tg.start_soon(partial(tokens.run, self._guard("token writer")), name="token-writer")

    def _start_tenant_bridge(self, tg: anyio.abc.TaskGroup, js: JetStreamContext) -> None:
        """The tenant bridge's loop, when ``SANDBOXD_TENANT_BRIDGE`` is on: tenant requests become creates."""
        if self.settings.tenants.enabled:
            bridge = TenantBridge.for_service(js, self.settings)
            tg.start_soon(partial(bridge.run, self._guard("tenant bridge")), name="tenant-bridge")

    def _stranded_status(self, status: StatusWriter) -> Stranded:
        """What the dead-letter mover does for a stranded event: the sandbox's status says why."""

        async def record(subject: str, message: str) -> None:
            sandbox_id = sandbox_id_of(subject)
            if sandbox_id is not None:
                error = PermanentError(message, reason=MAX_DELIVERIES)
                await status.write(
                    sandbox_id,
                    partial(statuses.rejected, sandbox_id=sandbox_id, error=error, event_id=None, now=self.clock()),
                )

        return record

    async def _monitor(self, js: JetStreamContext, stop: anyio.Event) -> None:
        """Sample the consumer's backlog (lag gauges), the connection and the target (readiness) until cancelled.

        The one place that ends the service on the broker's account: a connection that closed for good (it
        reconnects forever, so only a server that refuses it, or a close from elsewhere, gets here).
        """
        lag = self.telemetry.instruments.consumer
        while True:
            if self.nc is not None and self.nc.is_closed and not stop.is_set():
                raise BrokerUnavailable("the connection to NATS closed and cannot come back; exiting")
            self.health.connected = self.nc is not None and self.nc.is_connected
            try:
                info = await js.consumer_info(naming.EVENTS_STREAM, naming.EVENTS_CONSUMER)
            except Exception as exc:  # noqa: BLE001 - a missed sample keeps the last figures
                log.debug("consumer_info failed: %s", exc.__class__.__name__)
            else:
                lag.update(
                    pending=info.num_pending or 0,
                    ack_pending=info.num_ack_pending or 0,
                    redelivered=info.num_redelivered or 0,
                )
            if isinstance(self.applier, Reachable):
                await self._probe_target(self.applier)
            await anyio.sleep(MONITOR_INTERVAL_S)

    async def _probe_target(self, target: Reachable) -> None:
        try:
            with anyio.fail_after(MONITOR_INTERVAL_S):
                await target.check_reachable()
        except Exception as exc:  # noqa: BLE001 - whatever the failure, the target is not reachable now
            why = exc.message if isinstance(exc, SandboxdError) else exc.__class__.__name__
            self.health.details["target"] = f"{self.settings.applier.kind} unreachable: {why}"
            self.health.target_reachable = False
            return
        self.health.details.pop("target", None)
        self.health.target_reachable = True

    @staticmethod
    def _kicker(queue: KeyedQueue) -> Callable[[SandboxId], None]:
        def kick(sandbox_id: SandboxId) -> None:
            with contextlib.suppress(RuntimeError):  # the queue is closing: the next start-up resyncs anyway
                queue.submit(sandbox_id)

        return kick

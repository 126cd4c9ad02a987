"""The reconciler service: connect, provision the topology, then run intake, the keyed queue and resync.

Structured concurrency: every loop is a named task in one task group. ``run(stop)`` returns after a clean
shutdown: stop fetching, hand back what has not started, let in-flight reconciles finish within the grace,
then drain the NATS connection so every ack is flushed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import anyio
from nats.aio.client import Client
from nats.js import JetStreamContext

from sandboxd import naming
from sandboxd.adapters.jetstream.connection import connect
from sandboxd.adapters.jetstream.deliveries import EventSource
from sandboxd.adapters.jetstream.publishing import JetStreamDeadLetters
from sandboxd.adapters.jetstream.stores import KvStore
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.app.scaler import idle_lifecycle
from sandboxd.models.desired import DesiredState, OwnerClaim
from sandboxd.models.status import SandboxStatus
from sandboxd.reconcile.intake import Intake
from sandboxd.reconcile.ports import Applier, Observer
from sandboxd.reconcile.reconciler import Reconciler, Renderer
from sandboxd.reconcile.statuses import StatusWriter
from sandboxd.runtime.consumer import Consumer
from sandboxd.runtime.disposition import Disposition
from sandboxd.runtime.queueing import Backlog, KeyedQueue
from sandboxd.runtime.resync import resync_forever
from sandboxd.runtime.retry import Backoff
from sandboxd.settings import Settings

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Health:
    """What /readyz reports: set by the service as it comes up and goes down."""

    connected: bool = False
    consumer_bound: bool = False
    draining: bool = False
    details: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.connected and self.consumer_bound and not self.draining


@dataclass
class Stores:
    desired: KvStore[DesiredState]
    status: KvStore[SandboxStatus]
    owners: KvStore[OwnerClaim]

    @classmethod
    async def open(cls, js: JetStreamContext) -> Stores:
        return cls(
            desired=KvStore(await js.key_value(naming.DESIRED_BUCKET), DesiredState),
            status=KvStore(await js.key_value(naming.STATUS_BUCKET), SandboxStatus),
            owners=KvStore(await js.key_value(naming.OWNERS_BUCKET), OwnerClaim),
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
    ) -> None:
        self.settings = settings
        self.applier = applier
        self.render = render
        self.clock = clock
        self.health = health or Health()
        self.queue: KeyedQueue | None = None
        self.consumer: Consumer | None = None
        self.nc: Client | None = None

    async def run(self, stop: anyio.Event) -> None:
        nc = self.nc = await connect(self.settings.nats)
        self.health.connected = True
        try:
            js = nc.jetstream()
            await ensure_topology(js, self.settings.topology)
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
        stores = await Stores.open(js)
        status = StatusWriter(stores.status)
        intake = Intake(desired=stores.desired, owners=stores.owners, status=status, clock=self.clock)
        reconciler = Reconciler(
            desired=stores.desired,
            owners=stores.owners,
            status=status,
            applier=self.applier,
            settings=self.settings.runtime,
            render=self.render,
            clock=self.clock,
        )
        disposition = Disposition(
            dead_letters=JetStreamDeadLetters(js),
            backoff=Backoff(worker.retry_base_s, worker.retry_cap_s),
            max_deliver=topology.max_deliver,
        )
        backlog = Backlog()
        queue = self.queue = KeyedQueue(
            handler=reconciler.reconcile,
            disposition=disposition,
            concurrency=worker.concurrency,
            heartbeat_s=topology.ack_wait_s / 3,
            backlog=backlog,
            hold_cap_s=worker.catch_up_hold_s,
        )
        source = await EventSource.bind(js)
        consumer = self.consumer = Consumer(
            source=source,
            intake=intake,
            queue=queue,
            disposition=disposition,
            max_held=topology.max_ack_pending,
            backlog=backlog,
        )
        self.health.consumer_bound = True
        consumed = anyio.Event()

        async def consume() -> None:
            try:
                await consumer.run()
            finally:
                consumed.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(queue.run, name="keyed-queue")
            tg.start_soon(partial(resync_forever, stores.desired, queue, interval_s=worker.resync_interval_s))
            tg.start_soon(consume, name="consume")
            if isinstance(self.applier, Observer):
                tg.start_soon(self.applier.observe, self._kicker(queue), name="observe-target")
            self.idle = idle_lifecycle(
                js, self.settings, desired=stores.desired, status=status, kick=self._kicker(queue), clock=self.clock
            )
            tg.start_soon(self.idle.run, name="idle-lifecycle")
            await stop.wait()
            log.info("stopping: no more fetches; %d deliveries held", queue.held)
            consumer.stop()
            await consumed.wait()  # the fetch in progress ends within its timeout; its batch is admitted
            await queue.close(worker.shutdown_grace_s)
            tg.cancel_scope.cancel()
        await source.close()
        self.health.consumer_bound = False

    @staticmethod
    def _kicker(queue: KeyedQueue) -> Callable[[str], None]:
        def kick(sandbox_id: str) -> None:
            with contextlib.suppress(RuntimeError):  # the queue is closing: the next start-up resyncs anyway
                queue.submit(sandbox_id)

        return kick

"""The tenant bridge inside ``sandboxd run``: tenant ``sandbox_requested`` events → ``sandbox.create`` events.

When ``SANDBOXD_TENANT_BRIDGE`` is on, the service starts ``TenantBridge.run`` as the named task
``tenant-bridge``. It binds its own durable consumer on the tenant service's stream
(``adapters.jetstream.tenants``), and for each delivery translates the tenant event
(``reconcile.tenants.create_event``) and publishes the create with ``Nats-Msg-Id`` ``tenant:<tenant event id>``
to SANDBOX_EVENTS, where intake takes it like any publisher's create. What happened is reported to a
``runtime.disposition.Disposition`` of its own (dead letters name the tenant stream), which decides as for any
event: ack once the create is stored (or deduplicated); dead-letter, then term, a request that cannot be a
create (``InvalidEvent``: the reason in the ``Sandboxd-*`` headers, the tenant body kept); nak with the backoff
when the publish failed transiently, and dead-letter ("gave up after N deliveries") only when
``SANDBOXD_MAX_DELIVER`` runs out; any other exception is this event's ``UnexpectedError``, never the process's.

The loop binds lazily and outlives every failed iteration (``runtime.loops.LoopGuard``, loop ``tenant bridge``):
a stream that does not exist yet (the tenant service creates it), a permission the server refuses, a leader
election — each is logged once, counted in ``sandboxd_loop_errors_total`` and retried with a growing pause, and
the rest of the service runs meanwhile.

Before publishing, the bridge reads the sandbox's desired state and the last create SANDBOX_EVENTS holds for it
(``EventsLookup``), and publishes nothing (acks) when ``reconcile.tenants.already_done`` says the create would do
nothing the request asked for: the sandbox exists, or this very request was bridged before. So a request the
tenant service sends again after JetStream's dedupe window (2 minutes) has forgotten its id changes nothing.

Concurrency: one fetch loop per replica, a batch handled in stream order; replicas share the durable consumer,
so a request is delivered to one of them at a time. Shutdown: the task is cancelled with the task group; a
delivery not yet acked is redelivered and publishes the same create, which JetStream stores once within its
dedupe window (and past it, ``already_done`` finds the first).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Final

import anyio
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from sandboxd import naming
from sandboxd.adapters.jetstream.deliveries import EventSource
from sandboxd.adapters.jetstream.errors import boundary
from sandboxd.adapters.jetstream.headers import MSG_ID
from sandboxd.adapters.jetstream.publishing import JetStreamDeadLetters, publish_event
from sandboxd.adapters.jetstream.stores import KvStore
from sandboxd.adapters.jetstream.tenants import bind_tenant_requests
from sandboxd.errors import SandboxdError
from sandboxd.models.desired import DesiredState
from sandboxd.models.events import CreateEvent
from sandboxd.reconcile.ports import Delivery
from sandboxd.reconcile.tenants import already_done, create_event
from sandboxd.runtime.disposition import DONE, Disposition, Outcome
from sandboxd.runtime.loops import LoopGuard
from sandboxd.runtime.retry import Backoff
from sandboxd.settings import Settings
from sandboxd.settings.tenants import TenantBridgeSettings

log = logging.getLogger(__name__)

BATCH: Final = 16
#: How long one fetch waits for a request, s; an empty fetch is a normal iteration.
FETCH_TIMEOUT_S: Final = 1.0

#: Publishes one create; (stream sequence, whether JetStream deduplicated it). ``publish_event`` on the service.
PublishCreate = Callable[[CreateEvent], Awaitable[tuple[int, bool]]]
#: Why a create would do nothing its request asked for (``None``: publish it). ``EventsLookup`` on the service.
AlreadyDone = Callable[[CreateEvent], Awaitable[str | None]]


class EventsLookup:
    """``AlreadyDone`` from JetStream: the sandbox's desired state and the id of its last create in SANDBOX_EVENTS
    (two reads the reconciler's NATS user may make), judged by ``reconcile.tenants.already_done``."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._desired: KvStore[DesiredState] | None = None

    async def __call__(self, create: CreateEvent) -> str | None:
        if self._desired is None:
            self._desired = await KvStore.open(self._js, naming.DESIRED_BUCKET, DesiredState)
        stored = await self._desired.get(naming.desired_key(create.subject))
        subject = naming.event_subject("create", create.subject)
        with boundary(f"reading the last create of {create.subject}"):
            try:
                last = await self._js.get_last_msg(naming.EVENTS_STREAM, subject)
            except NotFoundError:  # never created, or the stream no longer holds it (SANDBOXD_EVENTS_MAX_AGE_SECONDS)
                last = None
        last_id = (last.headers or {}).get(MSG_ID) if last is not None else None
        return already_done(create, desired=stored.value if stored else None, last_create_id=last_id)


class TenantBridge:
    def __init__(
        self,
        js: JetStreamContext,
        settings: TenantBridgeSettings,
        *,
        disposition: Disposition,
        publish: PublishCreate | None = None,
        done: AlreadyDone | None = None,
    ) -> None:
        self._js = js
        self._settings = settings
        self._disposition = disposition
        self._publish: PublishCreate = publish or partial(publish_event, js)
        self._done: AlreadyDone = done or EventsLookup(js)
        self._source: EventSource | None = None

    @classmethod
    def for_service(cls, js: JetStreamContext, settings: Settings) -> TenantBridge:
        """The bridge with the service's retry settings and a disposition that dead-letters from the tenant stream."""
        disposition = Disposition(
            dead_letters=JetStreamDeadLetters(js, stream=settings.tenants.stream),
            backoff=Backoff(settings.worker.retry_base_s, settings.worker.retry_cap_s),
            max_deliver=settings.topology.max_deliver,
        )
        return cls(js, settings.tenants, disposition=disposition)

    async def start(self) -> None:
        """Make (or keep) the consumer and bind it; raises (translated) while the stream is missing."""
        tenants = self._settings
        self._source = await bind_tenant_requests(
            self._js, stream=tenants.stream, subject=tenants.subject, durable=tenants.consumer
        )

    async def bridge_once(self, *, batch: int = BATCH, timeout_s: float = FETCH_TIMEOUT_S) -> int:
        """Fetch and settle one batch (binding first if needed); returns how many deliveries it settled."""
        if self._source is None:
            await self.start()
        assert self._source is not None
        deliveries = await self._source.fetch(batch, timeout_s)
        for delivery in deliveries:
            await self.handle_one(delivery)
        return len(deliveries)

    async def handle_one(self, delivery: Delivery) -> None:
        """Translate and publish one request, and report what happened; the disposition settles it."""
        try:
            event = create_event(delivery.data, message_id=delivery.headers.get(MSG_ID))
            skipped = await self._done(event)
            duplicate = (await self._publish(event))[1] if skipped is None else False
        except Exception as exc:  # this event's outcome, never the loop's
            outcome = Outcome.failed(exc, where="the tenant bridge")
            why = exc.message if isinstance(exc, SandboxdError) else exc.__class__.__name__
            foreign = not isinstance(exc, SandboxdError)
            log.warning("tenant request #%d: %s", delivery.stream_sequence, why, exc_info=exc if foreign else None)
            await self._disposition.settle([delivery], outcome)
            return
        if skipped is not None:
            log.info("tenant request #%d: nothing published: %s", delivery.stream_sequence, skipped)
        else:
            done = "create already stored" if duplicate else "create published"
            log.info("tenant request #%d: %s for %s", delivery.stream_sequence, done, event.subject)
        await self._disposition.settle([delivery], DONE)

    async def run(self, guard: LoopGuard) -> None:
        """Bridge until cancelled; a failed iteration (binding included) is the guard's, never the process's."""
        try:
            while True:
                try:
                    await self.bridge_once()
                except Exception as exc:  # noqa: BLE001 - one failed iteration never ends the loop
                    await guard.failed(exc)
                else:
                    guard.succeeded()
        finally:
            with anyio.CancelScope(shield=True):  # cancelled with the task group: unsubscribe all the same
                await self.close()

    async def close(self) -> None:
        if self._source is not None:
            source, self._source = self._source, None
            await source.close()

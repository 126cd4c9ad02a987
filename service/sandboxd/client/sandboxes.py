"""``SandboxClient``: publish lifecycle events and read the status projection, typed, over one NATS connection.

    async with SandboxClient.connect("nats://127.0.0.1:4222") as sandboxes:
        done = await sandboxes.create("alice", spec, event_id=request_id)
        status = await sandboxes.wait_for("alice", settled(done), timeout=120)

Writes are events (``sandbox.<verb>.<id>`` on SANDBOX_EVENTS) whose CloudEvents id is their ``Nats-Msg-Id``:
give the same ``event_id`` again (or derive one with ``event_id_for``) and JetStream stores the event once.
Before publishing, each verb checks the status projection like kubectl checks the API: ``create`` refuses a
live sandbox id (``AlreadyExists``), ``update``/``delete``/``suspend``/``resume`` refuse one with no live
sandbox (``NotFound``: no status, or ``Deleted``/``Rejected``). A sandbox intake accepted that has no status
yet (its first reconcile has not written one) is live too: ``get``/``find`` read it from the desired state and
show it ``Pending``, "accepted, waiting for its first reconcile" (``projection.accepted``), where the
credentials may read that bucket (not the ``sandbox-publisher`` or ``sandbox-console`` role: their read gets no
answer, and after ``projection.DESIRED_WAIT_S`` the sandbox counts as not found, the error saying why).
``force=True`` skips the check and publishes, as the event contract allows (a create onto a live sandbox
updates it, an update of an unknown id creates it, a delete/suspend/resume of an unknown id is refused by
sandboxd and dead-lettered). An event whose id the status shows applied is a retry and never refused. The check
guards against typos; it is not a lock: sandboxd's intake stays the authority.

The connection needs only what the ``sandbox-publisher`` role may do (deploy/nats): publish events, read and
watch the status bucket (and, to see sandboxes not yet reconciled, read the desired state, which that role may
not). Reads never write anything.

What it deliberately does not do: retry a failed publish on its own (retry with the same ``event_id``; it is
deduplicated), or read the desired-state bucket except for a sandbox with no status, or list from it.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Mapping
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
from nats.aio.client import Client

from sandboxd.adapters.jetstream.connection import connect
from sandboxd.adapters.jetstream.publishing import publish_event
from sandboxd.client import projection
from sandboxd.client.conditions import Condition, Predicate, describe
from sandboxd.client.errors import AlreadyExists, NotFound, StatusUnreadable, WaitTimedOut
from sandboxd.client.events import Published, build_event, checked_spec
from sandboxd.client.projection import Change, OnUnreadable
from sandboxd.errors import BrokerUnavailable
from sandboxd.models.spec import SandboxSpec
from sandboxd.models.status import Phase, SandboxStatus
from sandboxd.settings import NatsSettings, load
from sandboxd.settings.broker import nats_context
from sandboxd.telemetry import logs

DEFAULT_SOURCE = "sandboxd.client"
DEFAULT_CONNECT_TIMEOUT_S = 5.0
#: Phases of a status record that describe no live sandbox: ``Deleted`` (a tombstone) and ``Rejected`` (an id
#: whose first event was refused). An id in one of them is unknown to ``update``/``delete``/``suspend``/``resume``.
SpecLike = SandboxSpec | Mapping[str, Any]  # a model, or its wire form (camelCase) as a mapping
GONE = frozenset({Phase.DELETED, Phase.REJECTED})


class SandboxClient:
    """Typed access to sandboxd for a platform service; one per connection (``connect``, or wrap your own)."""

    def __init__(self, nc: Client, *, source: str = DEFAULT_SOURCE) -> None:
        self.nc = nc
        self.source = source  # the CloudEvents ``source`` of what this client publishes
        self._js = nc.jetstream()

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        settings: NatsSettings | str | None = None,
        *,
        context: str | None = None,
        timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        reconnect: bool = False,
        on_connection: Callable[[bool], None] | None = None,
        source: str = DEFAULT_SOURCE,
    ) -> AsyncIterator[SandboxClient]:
        """Connect (``NatsSettings``, a URL, or ``None``: ``NATS_URL``, ``NATS_USER``, ... from the environment).

        Without ``NatsSettings``, a ``nats`` CLI context fills in what the URL and the environment leave out:
        ``context`` names one, else ``NATS_CONTEXT`` or the one ``nats context select`` chose (if any).

        The first connect gives up after ``timeout`` seconds with ``BrokerUnavailable``. ``reconnect``: keep
        reconnecting after a later outage (for watches that outlive a server restart); ``on_connection(up)`` is
        told at once when the connection drops (``False``) and when it is back (``True``), never of the close that
        ends the block.
        """
        if not isinstance(settings, NatsSettings):
            settings = load(NatsSettings, {**nats_context(context), **({"url": settings} if settings else {})})
        closing = anyio.Event()

        def tell(up: bool) -> None:
            if on_connection is not None and not closing.is_set():
                on_connection(up)

        try:
            with anyio.fail_after(timeout):
                nc = await connect(settings, allow_reconnect=reconnect, on_change=tell)
        except TimeoutError as exc:
            raise BrokerUnavailable(
                f"cannot connect to NATS at {logs.without_credentials(settings.url)} within {timeout:g}s "
                "(is the server running, and are the URL and credentials right?)"
            ) from exc
        try:
            yield cls(nc, source=source)
        finally:
            closing.set()  # our own close is no outage: ``sandboxctl watch`` ended by Ctrl-C says nothing of it
            await nc.close()

    # --- events -------------------------------------------------------------------------------------------

    async def create(
        self, sandbox_id: str, spec: SpecLike, *, event_id: str | None = None, force: bool = False
    ) -> Published:
        """Publish ``sandbox.create``; ``AlreadyExists`` when the id is live (``force``: publish anyway)."""
        data = {"spec": _wire(checked_spec(spec))}
        if not force:
            found = await self.find(sandbox_id)
            if found is not None and found.phase not in GONE and not _retried(found, event_id):
                raise AlreadyExists(
                    f"sandbox {sandbox_id} already exists ({found.phase.value}); use update to change its spec"
                )
        return await self._publish("create", sandbox_id, data, event_id=event_id)

    async def update(
        self, sandbox_id: str, spec: SpecLike, *, event_id: str | None = None, force: bool = False
    ) -> Published:
        """Publish ``sandbox.update`` with the whole spec (events are level-based, never patches)."""
        data = {"spec": _wire(checked_spec(spec))}
        return await self._publish_to_existing("update", sandbox_id, data, event_id=event_id, force=force)

    async def delete(
        self, sandbox_id: str, *, purge: bool = False, event_id: str | None = None, force: bool = False
    ) -> Published:
        """Publish ``sandbox.delete``: the namespace and repo volumes are kept unless ``purge``."""
        return await self._publish_to_existing("delete", sandbox_id, {"purge": purge}, event_id=event_id, force=force)

    async def suspend(
        self, sandbox_id: str, *, reason: str | None = None, event_id: str | None = None, force: bool = False
    ) -> Published:
        """Publish ``sandbox.suspend``: no session pods run until ``resume``."""
        data = {"reason": reason} if reason else None
        return await self._publish_to_existing("suspend", sandbox_id, data, event_id=event_id, force=force)

    async def resume(
        self, sandbox_id: str, *, reason: str | None = None, event_id: str | None = None, force: bool = False
    ) -> Published:
        """Publish ``sandbox.resume`` (a suspended or idle sandbox runs again)."""
        data = {"reason": reason} if reason else None
        return await self._publish_to_existing("resume", sandbox_id, data, event_id=event_id, force=force)

    async def _publish_to_existing(
        self, verb: str, sandbox_id: str, data: Mapping[str, Any] | None, *, event_id: str | None, force: bool
    ) -> Published:
        if not force:
            found, answered = await self._lookup(sandbox_id)
            if (found is None or found.phase in GONE) and not _retried(found, event_id):
                was = f" (it is {found.phase.value})" if found is not None else ""
                if not answered:
                    was = " (no status, and these credentials may not read the desired state to tell)"
                raise NotFound(f"sandbox {sandbox_id} not found{was}; --force / force=True publishes the {verb} anyway")
        return await self._publish(verb, sandbox_id, data, event_id=event_id)

    async def _publish(
        self, verb: str, sandbox_id: str, data: Mapping[str, Any] | None, *, event_id: str | None
    ) -> Published:
        event = build_event(verb, sandbox_id, data, event_id=event_id, source=self.source)
        try:
            sequence, duplicate = await publish_event(self._js, event)
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(f"{exc.message} (is the topology provisioned? run `sandboxd init`)") from exc
        return Published(verb, sandbox_id, event.id, sequence, duplicate)

    # --- the status projection ----------------------------------------------------------------------------

    async def get(self, sandbox_id: str) -> SandboxStatus:
        """The sandbox's status (``Pending`` when accepted but not yet reconciled); ``NotFound`` when it has none."""
        found, answered = await self._lookup(sandbox_id)
        if found is None:
            why = "never published, or not yet accepted"
            if not answered:
                why += "; these credentials may not read the desired state to tell whether it was accepted"
            raise NotFound(f"sandbox {sandbox_id} has no status ({why})")
        return found

    async def find(self, sandbox_id: str) -> SandboxStatus | None:
        """The sandbox's status (``Pending`` when accepted but not yet reconciled), or ``None`` when it has none."""
        return (await self._lookup(sandbox_id))[0]

    async def _lookup(self, sandbox_id: str) -> tuple[SandboxStatus | None, bool]:
        """The status, else what the desired state says; and whether every read answered."""
        status = await projection.find_status(self._js, sandbox_id)
        if status is not None:
            return status, True
        desired = await projection.find_desired(self._js, sandbox_id)
        found = projection.accepted(desired.state) if desired.state is not None else None
        return found, desired.answered

    async def list(
        self,
        *,
        phases: Collection[Phase] | None = None,
        gone: bool = True,
        on_unreadable: OnUnreadable | None = None,
    ) -> builtins.list[SandboxStatus]:
        """Every status record sorted by id; only ``phases`` if given; without ``Deleted`` ones unless ``gone``.

        A record that does not parse is left out and handed to ``on_unreadable`` (a ``StatusUnreadable`` naming
        its key; raise it to fail the list instead); without one, a warning is logged.
        """
        found = await projection.list_statuses(self._js, on_unreadable=on_unreadable)
        return [s for s in found if (phases is None or s.phase in phases) and (gone or s.phase is not Phase.DELETED)]

    async def watch(
        self, sandbox_id: str | None = None, *, on_unreadable: OnUnreadable | None = None
    ) -> AsyncGenerator[Change | None, None]:
        """The current records, a ``None`` marker, then every change until the caller stops iterating.

        With ``connect(reconnect=True)`` a watch survives a server restart (it starts again as soon as the
        connection is back, yielding only what changed meanwhile); on a connection that closed for good it ends
        with ``BrokerUnavailable``. A value that does not parse is not yielded: ``on_unreadable`` hears of it
        (once per value, in its place in the stream; raising ends the watch), or a warning is logged.
        """
        changes = projection.watch_statuses(
            self._js,
            sandbox_id,
            closed=lambda: self.nc.is_closed,
            reconnects=lambda: int(self.nc.stats["reconnects"]),
            on_unreadable=on_unreadable,
        )
        async with aclosing(changes) as stream:
            async for change in stream:
                yield change

    async def wait_for(self, sandbox_id: str, condition: Condition | Predicate, timeout: float) -> SandboxStatus | None:
        """Wait until ``condition`` holds for the sandbox's status (checked now, then at every change).

        Returns the status it held for (``None``: no record, e.g. waiting for a deletion). ``WaitTimedOut``
        after ``timeout`` seconds (with the last status seen); whatever the condition raises (``SandboxFailed``)
        ends the wait at once. A record that does not parse is a record all the same (never "no record"): the
        wait goes on, and a timeout says the record is unreadable.
        """
        last: SandboxStatus | None = None
        unreadable: StatusUnreadable | None = None  # what the key holds instead of a status, while it does

        def skipped(error: StatusUnreadable) -> None:
            nonlocal unreadable
            unreadable = error
            projection.log_unreadable(error)

        try:
            with anyio.fail_after(timeout):
                async with aclosing(self.watch(sandbox_id, on_unreadable=skipped)) as changes:
                    seen = False
                    async for change in changes:
                        if change is None:  # the end of the current records: the key has none, or it was seen
                            if not seen and unreadable is None and condition(None):
                                return None
                            continue
                        seen, last, unreadable = True, change.status, None
                        if condition(last):
                            return last
        except TimeoutError as exc:  # fail_after's: the watch turns nats' own timeouts into BrokerUnavailable
            name = condition.name if isinstance(condition, Condition) else "the condition"
            where = "its status record is unreadable" if unreadable is not None else describe(last)
            raise WaitTimedOut(
                f"sandbox {sandbox_id}: {name} did not hold within {timeout:g}s ({where})", status=last
            ) from exc
        raise WaitTimedOut(f"sandbox {sandbox_id}: the watch ended before the condition held", status=last)


def _retried(found: SandboxStatus | None, event_id: str | None) -> bool:
    """Whether the status shows this very event applied: publishing it again is a retry, never refused."""
    return found is not None and event_id is not None and found.event_id == event_id


def _wire(spec: SandboxSpec) -> dict[str, Any]:
    data: dict[str, Any] = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data

"""The protocols a reconcile talks to; adapters implement them, tests use the in-memory fakes.

``Applier`` is where rendered objects go (Kubernetes server-side apply, a GitOps commit, a folder);
``Store`` is a compare-and-set record store (desired state, status, owner claims); ``Clock`` gives "now";
``Delivery``, ``Source`` and ``DeadLetters`` are what the runtime needs of the event broker. The idle lifecycle's
ports: ``DesiredView`` (every desired state, watched), ``CommandPublisher``, ``CommandSink`` (the reconcile
pass's way to the publisher), ``ActivityPublisher``, ``Prober`` and ``ScaleTarget`` (the sweeper's and the
scaler's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar, runtime_checkable

from sandboxd.models.activity import ActivityReport, ScaleCommand
from sandboxd.models.desired import DesiredState
from sandboxd.models.status import ObjectRef
from sandboxd.naming import SandboxId
from sandboxd.render.model import RenderedSandbox

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: tuple[ObjectRef, ...]
    #: False when the target already held exactly these objects (no write, no commit).
    changed: bool
    #: Ready pty-server replicas the target reports; None when it cannot know (GitOps, directory).
    ready_replicas: int | None = None
    pruned: tuple[ObjectRef, ...] = field(default=())


class Applier(Protocol):
    """Makes a target hold exactly a sandbox's rendered objects. Every method is idempotent.

    Errors are ``sandboxd.errors.ApplyRejected`` (permanent, with the target's own message) or
    ``ApplyUnavailable`` (retryable).
    """

    async def apply(self, sandbox: RenderedSandbox, *, generation: int) -> ApplyResult:
        """Create or update every object; prune the sandbox's objects that are no longer rendered, never a PVC
        (the file appliers keep a claim no longer rendered in the tree, marked retained, until a purge)."""
        ...

    async def delete(self, sandbox: RenderedSandbox, *, purge: bool) -> None:
        """Retain: remove workloads, Services, route, ConfigMap, Secrets, then ServiceAccount, Role and
        RoleBinding; keep namespace, quota and PVCs (the data, not access: ``sandboxd.render.retained``).

        Purge: remove everything, the namespace and its PVCs included, and return once it is gone.
        """
        ...

    async def ready_replicas(self, sandbox: RenderedSandbox) -> int | None:
        """Ready pty-server replicas now, or None when the target cannot tell."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Versioned(Generic[T]):
    """A stored value and the revision a compare-and-set must name to replace it."""

    value: T
    revision: int


class Store(Protocol[T]):
    """A key → record store with compare-and-set (the JetStream KV buckets; an in-memory fake in tests).

    ``put`` with ``revision=None`` creates and fails if the key exists; otherwise it replaces only that exact
    revision. A lost race raises ``sandboxd.errors.StoreConflict``. ``expire_after_s`` asks the store to remove
    the record (and its history) that long after the write, unless a later put replaced it.
    """

    async def get(self, key: str) -> Versioned[T] | None: ...

    def recent(self, key: str) -> Versioned[T] | None:
        """The record this process last wrote or read for ``key``, if remembered: no I/O, possibly stale.

        Good as the expected revision of a compare-and-set (a stale one just fails); anything that needs the
        current record must ``get`` it."""
        ...

    async def put(self, key: str, value: T, *, revision: int | None, expire_after_s: float | None = None) -> int: ...

    async def delete(self, key: str, *, revision: int | None = None) -> None: ...

    async def keys(self) -> list[str]: ...


class Clock(Protocol):
    def __call__(self) -> datetime: ...


class InboundEvent(Protocol):
    """What intake needs of a delivered event (the runtime's deliveries have this shape, and more)."""

    @property
    def subject(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def stream_sequence(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


class EventLog(Protocol):
    """The lifecycle events as the stream keeps them (``SANDBOX_EVENTS``, limits retention): for the one question
    intake cannot answer from the desired state, whether an earlier create is still on its way."""

    async def create_after(self, sandbox_id: SandboxId, sequence: int) -> InboundEvent | None:
        """The first ``sandbox.create.<sandbox_id>`` the stream holds after stream sequence ``sequence``."""
        ...

    async def settled(self, sequence: int) -> bool:
        """Whether the shared consumer has settled (acked or terminated) every event up to ``sequence``."""
        ...


class Delivery(InboundEvent, Protocol):
    """One delivered event, settled exactly once (by ``runtime.disposition``)."""

    @property
    def num_delivered(self) -> int: ...

    @property
    def published_at(self) -> datetime: ...

    @property
    def num_pending(self) -> int:
        """Events still waiting in the stream for this consumer after this one (the backlog)."""
        ...

    async def ack(self) -> None: ...

    async def nak(self, delay: float | None = None) -> None: ...

    async def term(self) -> None: ...

    async def in_progress(self) -> None: ...


class Source(Protocol):
    async def fetch(self, batch: int, timeout: float) -> Sequence[Delivery]: ...


class DeadLetters(Protocol):
    async def send(self, delivery: Delivery, *, reason: str, message: str) -> None:
        """Keep the original event (body and headers) with why it failed; must be durable before returning."""
        ...


@runtime_checkable
class Observer(Protocol):
    """An applier that can watch its target (e.g. StatefulSet readiness, managed objects deleted out of band).

    ``observe`` runs until cancelled and calls ``kick(sandbox_id)`` whenever a sandbox should be reconciled
    again; the keyed queue coalesces the kicks.
    """

    async def observe(self, kick: Callable[[SandboxId], None]) -> None: ...


@runtime_checkable
class Reachable(Protocol):
    """An applier that can tell whether its target answers (the Kubernetes API); ``/readyz`` waits for it.

    ``check_reachable`` returns when the target answers and raises ``sandboxd.errors.ApplyUnavailable`` saying
    why when it does not. It is cheap (e.g. ``GET /version``) and called every few seconds, never per reconcile.
    """

    async def check_reachable(self) -> None: ...


# --- the idle lifecycle -------------------------------------------------------------------------------------


class DesiredView(Protocol):
    """Every sandbox's desired state as this process last saw it (a KV watch in production)."""

    @property
    def ready(self) -> bool:
        """False until the initial state has been read."""
        ...

    def snapshot(self) -> Iterable[Versioned[DesiredState]]:
        """The records now; cheap, no I/O."""
        ...

    def note(self, record: Versioned[DesiredState]) -> None:
        """A record this process wrote (so the next sweep does not act on the older one it replaced)."""
        ...


class CommandPublisher(Protocol):
    async def publish(self, command: ScaleCommand) -> None:
        """Durably publish, deduplicated by ``command.command_id``; ``BrokerUnavailable`` when it could not."""
        ...


class CommandSink(Protocol):
    """Where a reconcile pass sends the scale command of a suspend or resume it applied (the runtime's
    ``CommandOutbox``: it publishes through a ``CommandPublisher`` and keeps what failed to publish)."""

    async def send(self, command: ScaleCommand) -> None:
        """Publish now, deduplicated by ``command.command_id``; a ``SandboxdError`` when that failed, the
        command then kept and published again later (so the caller only logs it)."""
        ...


class ActivityPublisher(Protocol):
    async def publish(self, sandbox_id: SandboxId, report: ActivityReport) -> None:
        """Share a probed report with the other replicas (best effort)."""
        ...


class Prober(Protocol):
    async def probe(self, *, sandbox_id: SandboxId, namespace: str, owner_uid: str) -> ActivityReport | None:
        """The sandbox's activity now, or ``None`` when it could not be read (never an error, never activity)."""
        ...


class ScaleTarget(Protocol):
    async def scale(self, *, namespace: str, name: str, replicas: int) -> int | None:
        """Make the workload run ``replicas`` pods; the count it had before, or ``None`` if it does not exist.

        Errors are ``ApplyRejected`` (permanent) or ``ApplyUnavailable`` (retryable).
        """
        ...

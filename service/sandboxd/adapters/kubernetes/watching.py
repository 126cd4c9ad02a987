"""Watching the cluster for what should trigger a reconcile: readiness changes and out-of-band deletions.

One feed per watched collection, each a list-then-watch loop across all namespaces:

- **readiness**: the pty-server StatefulSets (``app.kubernetes.io/name=pty-server,openova.io/managed-by=
  catalyst``, full objects); a sandbox is kicked when ``spec.replicas`` or ``status.readyReplicas`` of its
  StatefulSet changes, when one appears already ready, and when one is deleted. ``Ready`` thus follows the
  pods, not the write;
- **deletions**: every other kind the reconciler manages but Secrets (``openova.io/managed-by=catalyst``,
  metadata only; ``resources.CLUSTER_WATCHED``: listing Secrets across the cluster would need a cluster-wide read
  of them, which the reconciler does not hold); a sandbox is kicked when one of its objects is deleted, and the
  next reconcile restores it (or, for a sandbox being deleted, finds nothing to do).

The sandbox is the object's ``openova.io/sandbox`` label; the keyed queue coalesces kicks, so a burst costs one
pass. Each feed resumes its watch from the last resourceVersion it saw (bookmarks keep that fresh while nothing
changes). A 410 Gone, as an HTTP status or as an ``ERROR`` event (kubernetes_asyncio's ``Watch`` retries a 410
only once, with the same stale version), makes it **list again**: objects that vanished or changed while it was
not watching are kicked then, by comparing the new list with what it knew. The first list kicks nothing: the
service's start-up resync reconciles every sandbox anyway.

Failures never end ``run``: a translated error (API server unreachable, a CRD not installed yet, 403) is logged
and retried after a growing, jittered pause; anything unexpected (a malformed event) is logged with its
traceback and the feed starts over from a fresh list. Cancellation ends it.

A ``Listener`` (the applier's ``inventory.Inventory``) hears every list and event of every feed, and that a
feed lost its watch (until its next list, what it knew may be stale): the applier's watch cache rides on the
same connections. Concurrency: one task per feed in one task group; ``kick`` and the listener must not block
(the service's kicker only submits to the queue). What it deliberately does not do: keep objects itself (the
listener does), or kick for changes the reconciler made itself other than replica counts (an apply that
changes nothing is not an event).
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncGenerator, Callable, Hashable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from sandboxd import naming
from sandboxd.adapters.kubernetes.errors import ResourceVersionGone
from sandboxd.adapters.kubernetes.resources import (
    CLUSTER_WATCHED,
    MANAGED_SELECTOR,
    PTY_SERVER_SELECTOR,
    SANDBOX_LABEL,
    STATEFUL_SET,
    Resource,
)
from sandboxd.errors import ApplyUnavailable, SandboxdError
from sandboxd.naming import SandboxId

log = logging.getLogger(__name__)

Kick = Callable[[SandboxId], None]


@dataclass(frozen=True, slots=True)
class WatchTiming:
    """How long one watch request lasts and how failures are spaced, s."""

    #: Server-side watch timeout (jittered up to twice as long per request); the watch then resumes.
    timeout_s: float = 300.0
    #: First pause after a failure; doubled per failure in a row, jittered into its upper half.
    backoff_base_s: float = 0.5
    #: Longest pause between attempts.
    backoff_cap_s: float = 30.0

    def backoff(self, failures: int) -> float:
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2.0 ** max(0, failures - 1))
        return ceiling * (0.5 + 0.5 * random.random())  # jitter spreads retries


class WatchTransport(Protocol):
    """What the feeds need of ``transport.KubeTransport``."""

    async def list(self, collection: str, *, label_selector: str, metadata_only: bool = False) -> dict[str, Any]: ...

    def watch(
        self,
        collection: str,
        *,
        label_selector: str,
        resource_version: str,
        timeout_s: float,
        metadata_only: bool = False,
    ) -> AsyncGenerator[dict[str, Any], None]: ...


class Listener(Protocol):
    """What hears a feed's lists and events besides the kicks (``inventory.Inventory``)."""

    def relisted(self, resource: Resource, items: Sequence[Mapping[str, Any]]) -> None: ...

    def changed(self, resource: Resource, kind: str, obj: Mapping[str, Any]) -> None: ...

    def lost(self, resource: Resource) -> None: ...


class _Deaf:
    def relisted(self, resource: Resource, items: Sequence[Mapping[str, Any]]) -> None:
        return None

    def changed(self, resource: Resource, kind: str, obj: Mapping[str, Any]) -> None:
        return None

    def lost(self, resource: Resource) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Feed:
    """One watched collection and what, in it, is worth a kick."""

    name: str
    resource: Resource
    selector: str
    metadata_only: bool
    #: The part of an object a kick-worthy change changes (a constant: only deletions count).
    fingerprint: Callable[[Mapping[str, Any]], Hashable]
    #: Whether an object seen for the first time (after the first list) is worth a kick.
    news: Callable[[Hashable], bool]


def _replica_counts(obj: Mapping[str, Any]) -> Hashable:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return (int(spec.get("replicas") or 0), int(status.get("readyReplicas") or 0))


def _already_ready(fingerprint: Hashable) -> bool:
    return isinstance(fingerprint, tuple) and fingerprint[1] > 0


def feeds() -> tuple[Feed, ...]:
    """The readiness feed and one deletions feed per other managed kind."""
    readiness = Feed(
        name="readiness",
        resource=STATEFUL_SET,
        selector=PTY_SERVER_SELECTOR,
        metadata_only=False,
        fingerprint=_replica_counts,
        news=_already_ready,
    )
    deletions = tuple(
        Feed(
            name=f"deletions/{resource.plural}",
            resource=resource,
            selector=MANAGED_SELECTOR,
            metadata_only=True,
            fingerprint=lambda _obj: None,
            news=lambda _fingerprint: False,
        )
        for resource in CLUSTER_WATCHED
        if resource is not STATEFUL_SET
    )
    return (readiness, *deletions)


@dataclass
class Tracker:
    """What one feed knows (object uid → its sandbox and fingerprint) and the kicks a change of it is worth."""

    feed: Feed
    kick: Kick
    known: dict[str, tuple[SandboxId, Hashable]] = field(default_factory=dict)
    primed: bool = False

    def relist(self, items: list[Mapping[str, Any]]) -> None:
        """A full list: kick for what vanished or changed since the last one (nothing on the first)."""
        seen = dict(entry for entry in map(self._entry, items) if entry is not None)
        if self.primed:
            for uid, (sandbox, _) in self.known.items():
                if uid not in seen:
                    self.kick(sandbox)
            for uid, entry in seen.items():
                self._compare(self.known.get(uid), entry)
        self.known = seen
        self.primed = True

    def event(self, kind: str, obj: Mapping[str, Any]) -> None:
        found = self._entry(obj)
        if found is None:
            return
        uid, entry = found
        if kind == "DELETED":
            self.known.pop(uid, None)
            self.kick(entry[0])
            return
        self._compare(self.known.get(uid), entry)
        self.known[uid] = entry

    def _compare(self, previous: tuple[SandboxId, Hashable] | None, current: tuple[SandboxId, Hashable]) -> None:
        sandbox, fingerprint = current
        if (previous is None and self.feed.news(fingerprint)) or (previous is not None and previous[1] != fingerprint):
            self.kick(sandbox)

    def _entry(self, obj: Mapping[str, Any]) -> tuple[str, tuple[SandboxId, Hashable]] | None:
        """The object's uid, sandbox and fingerprint; None without a uid or a sandbox label that is a sandbox id
        (a sandbox's objects carry the id itself: ``naming.label_value`` keeps a valid id as it is)."""
        metadata = obj.get("metadata") or {}
        uid = str(metadata.get("uid") or "")
        sandbox = naming.as_sandbox_id(str((metadata.get("labels") or {}).get(SANDBOX_LABEL) or ""))
        if not uid or sandbox is None:
            return None
        return uid, (sandbox, self.feed.fingerprint(obj))


@dataclass
class Cursor:
    """Where a feed resumes: the last resourceVersion it saw; None means list first."""

    version: str | None = None


class TargetWatch:
    """Runs every feed until cancelled; see the module docstring."""

    def __init__(
        self, transport: WatchTransport, *, timing: WatchTiming | None = None, listener: Listener | None = None
    ) -> None:
        self.transport = transport
        self.timing = timing or WatchTiming()
        self.listener: Listener = listener or _Deaf()
        #: Lists made per feed (the first one included): how often a feed had to start over.
        self.lists: dict[str, int] = {}

    async def run(self, kick: Kick) -> None:
        async with anyio.create_task_group() as tg:
            for feed in feeds():
                tg.start_soon(self.follow, feed, kick, name=f"watch-{feed.name}")

    async def follow(self, feed: Feed, kick: Kick) -> None:
        """List, then watch from the list's version, for ever; relist on 410, back off on failures.

        A watch the server ended normally resets the failure count; a 410 relists at once the first time in a row.
        """
        tracker = Tracker(feed, kick)
        cursor = Cursor()
        failures = 0
        try:
            while True:
                try:
                    if cursor.version is None:
                        cursor.version = await self._list(feed, tracker)
                    await self._watch(feed, tracker, cursor)
                    failures = 0
                except ResourceVersionGone:
                    self.listener.lost(feed.resource)
                    log.info("watch %s: resourceVersion %s expired, listing again", feed.name, cursor.version)
                    cursor.version = None
                    failures += 1
                    if failures > 1:  # gone again right after a fresh list: do not spin
                        await anyio.sleep(self.timing.backoff(failures - 1))
                except SandboxdError as exc:  # resumed from the cursor: no event is missed, the listener stays
                    failures += 1
                    pause = self.timing.backoff(failures)
                    log.warning("watch %s failed (%s); retrying in %.1fs", feed.name, exc.message, pause)
                    await anyio.sleep(pause)
                except Exception:
                    self.listener.lost(feed.resource)
                    failures += 1
                    pause = self.timing.backoff(failures)
                    log.exception("watch %s broke; listing again in %.1fs", feed.name, pause)
                    cursor.version = None
                    await anyio.sleep(pause)
        finally:  # cancelled: what the listener holds of this feed is no longer followed
            self.listener.lost(feed.resource)

    async def _list(self, feed: Feed, tracker: Tracker) -> str:
        found = await self.transport.list(
            feed.resource.collection(), label_selector=feed.selector, metadata_only=feed.metadata_only
        )
        self.lists[feed.name] = self.lists.get(feed.name, 0) + 1
        items = list(found.get("items") or [])
        tracker.relist(items)
        self.listener.relisted(feed.resource, items)
        return str((found.get("metadata") or {}).get("resourceVersion", ""))

    async def _watch(self, feed: Feed, tracker: Tracker, cursor: Cursor) -> None:
        """One watch request, from ``cursor.version``, until the server ends it; ``cursor`` follows the events."""
        events = self.transport.watch(
            feed.resource.collection(),
            label_selector=feed.selector,
            resource_version=cursor.version or "",
            timeout_s=self.timing.timeout_s,
            metadata_only=feed.metadata_only,
        )
        async with aclosing(events):
            async for event in events:
                kind, obj = str(event.get("type", "")), event.get("object") or {}
                if kind == "ERROR":
                    raise _watch_error(feed, obj)
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    cursor.version = str(version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    tracker.event(kind, obj)
                    self.listener.changed(feed.resource, kind, obj)


def _watch_error(feed: Feed, status: Mapping[str, Any]) -> SandboxdError:
    message = f"watch {feed.name}: {status.get('reason', 'Error')}: {status.get('message', '')}"
    if status.get("code") == 410:
        return ResourceVersionGone(message)
    return ApplyUnavailable(message)

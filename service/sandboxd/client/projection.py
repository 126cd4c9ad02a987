"""Reading the status projection (KV bucket ``sandbox-status``) as any console would: get, list, watch.

The client's read side (``SandboxClient.get/list/watch/wait_for`` call these).

A sandbox has no status until its first reconcile, which a backlog may hold up. ``find_desired`` looks for it in
the desired state (KV bucket ``sandbox-desired``, which intake writes when it accepts the create), and
``accepted`` is what such a sandbox shows: ``Pending``, ``Accepted=True`` "accepted, waiting for its first
reconcile". Only some NATS users may read that bucket (deploy/nats: the admin and sandboxd's own, not the
publisher or the console): a request the server refuses gets no answer, so the read gives up after
``DESIRED_WAIT_S`` and says it could not tell.

Listing uses one wildcard watch and stops at its end-of-initial-state marker (``None``) instead of
``kv.keys()``, which costs a consumer per call and filters client-side. A watch yields the initial state, then a
``None`` marker, then live changes; deleted or purged keys arrive as ``Change(status=None)``.

A record this client cannot parse (a newer sandboxd's, or a corrupt one) is refused when asked for by id
(``StatusUnreadable``), but a list or a watch skips it: one bad key must not hide every other sandbox from a
console. Skipped, not hidden: each unreadable value (once, however often a restarted watch reads it again) goes
to the caller's ``on_unreadable`` as a ``StatusUnreadable`` naming the key and revision, never the value; a
caller that gives none gets a logged warning instead.

Read-only: nothing here writes the bucket (only reconcilers do).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass

import anyio
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from sandboxd import naming
from sandboxd.adapters.jetstream.errors import boundary
from sandboxd.adapters.jetstream.watching import ReplayEnd
from sandboxd.client.errors import NotFound, StatusUnreadable
from sandboxd.errors import BrokerUnavailable
from sandboxd.models.bounds import clip, quote
from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.models.status import Condition, ConditionStatus, ConditionType, Phase, SandboxStatus

log = logging.getLogger(__name__)

LIST_TIMEOUT_S = 30.0
CLOSED_CHECK_S = 1.0  # how often a quiet watch checks that its connection still lives, s
#: How long a read of the desired state waits for an answer, s: a user the server refuses it to gets none.
DESIRED_WAIT_S = 1.0
#: The ``Accepted`` condition of a sandbox with no status yet (``accepted``).
AWAITING_RECONCILE = "AwaitingFirstReconcile"
ACCEPTED_MESSAGE = "accepted, waiting for its first reconcile"
#: The most characters of a key a message or a log line quotes.
KEY_LIMIT = 80


#: Hears of each status record a list or a watch skipped because it does not parse; raising ends the read.
OnUnreadable = Callable[[StatusUnreadable], None]


@dataclass(frozen=True, slots=True)
class Change:
    """One watched update: the new status, or ``None`` when the key was deleted or purged."""

    sandbox_id: str
    status: SandboxStatus | None
    revision: int


async def status_bucket(js: JetStreamContext) -> KeyValue:
    with boundary(f"opening the {naming.STATUS_BUCKET} bucket"):
        try:
            return await js.key_value(naming.STATUS_BUCKET)
        except (BucketNotFoundError, NotFoundError) as exc:
            raise NotFound(
                f"no {naming.STATUS_BUCKET} bucket on this server: run `sandboxd init` or start sandboxd"
            ) from exc


async def find_status(js: JetStreamContext, sandbox_id: str) -> SandboxStatus | None:
    """The sandbox's status record, or ``None`` when it has none (deleted and purged keys too)."""
    kv = await status_bucket(js)
    with boundary(f"reading the status of {sandbox_id}"):
        try:
            entry = await kv.get(naming.status_key(sandbox_id))
        except KeyNotFoundError:
            return None
    return _parse(sandbox_id, entry.value, revision=entry.revision) if entry.value else None


@dataclass(frozen=True, slots=True)
class DesiredLookup:
    """What ``find_desired`` found: the live desired state (``None``: none, or deleted), and whether the bucket
    answered at all (``False``: these credentials may not read it, or it did not answer in time)."""

    state: DesiredState | None
    answered: bool


async def find_desired(js: JetStreamContext, sandbox_id: str, *, wait_s: float = DESIRED_WAIT_S) -> DesiredLookup:
    """The sandbox's desired state, if intake accepted it and it is not deleted; never raises for a refusal."""
    entry = None
    with anyio.move_on_after(wait_s) as waited, boundary(f"reading the desired state of {sandbox_id}"):
        try:
            kv = await js.key_value(naming.DESIRED_BUCKET)
            entry = await kv.get(naming.desired_key(sandbox_id))
        except (BucketNotFoundError, KeyNotFoundError, NotFoundError):
            return DesiredLookup(None, answered=True)
    if waited.cancelled_caught or entry is None:
        return DesiredLookup(None, answered=False)
    try:
        state = DesiredState.model_validate_json(entry.value) if entry.value else None
    except ValidationError:  # a newer sandboxd's record: it cannot tell
        return DesiredLookup(None, answered=False)
    live = state is not None and state.lifecycle is not Lifecycle.DELETED
    return DesiredLookup(state if live else None, answered=True)


def accepted(desired: DesiredState) -> SandboxStatus:
    """What a sandbox whose events intake accepted shows before its first reconcile writes a status."""
    condition = Condition(
        type=ConditionType.ACCEPTED,
        status=ConditionStatus.TRUE,
        reason=AWAITING_RECONCILE,
        message=ACCEPTED_MESSAGE,
        last_transition_time=desired.accepted_at,
        observed_generation=desired.generation,
    )
    return SandboxStatus(
        sandbox_id=desired.sandbox_id,
        phase=Phase.PENDING,
        conditions=[condition],
        incarnation=desired.incarnation,
        owner_uid=desired.owner_uid,
        namespace=naming.namespace_for(desired.owner_uid),
        event_id=desired.event_id,  # so publishing that event again reads as a retry
        updated_at=desired.accepted_at,
    )


async def list_statuses(
    js: JetStreamContext, *, timeout: float = LIST_TIMEOUT_S, on_unreadable: OnUnreadable | None = None
) -> list[SandboxStatus]:
    """Every sandbox's latest status, sorted by id; each record that does not parse goes to ``on_unreadable``."""
    found: dict[str, SandboxStatus] = {}
    try:
        with anyio.fail_after(timeout):
            async with aclosing(watch_statuses(js, None, on_unreadable=on_unreadable)) as changes:
                async for change in changes:
                    if change is None:
                        break
                    if change.status is None:
                        found.pop(change.sandbox_id, None)
                    else:
                        found[change.sandbox_id] = change.status
    except TimeoutError as exc:
        raise BrokerUnavailable(f"reading the {naming.STATUS_BUCKET} bucket took longer than {timeout:g}s") from exc
    return [found[key] for key in sorted(found)]


async def watch_statuses(
    js: JetStreamContext,
    sandbox_id: str | None,
    *,
    closed: Callable[[], bool] = lambda: False,
    reconnects: Callable[[], int] = lambda: 0,
    on_unreadable: OnUnreadable | None = None,
) -> AsyncGenerator[Change | None, None]:
    """Changes of one sandbox (or all): the current state, a ``None`` marker, then live changes.

    A value that does not parse is not yielded: ``on_unreadable`` hears of it (``log_unreadable`` when none is
    given), in its place in the stream.

    Runs until the caller stops iterating, or ``closed()`` says the connection is gone for good
    (``BrokerUnavailable``). When ``reconnects()`` (the connection's count of reconnects) moves, the watch starts
    again at once rather than waiting 10-20 s for nats-py to notice its ordered consumer's missed heartbeats: the
    new watch's current state is compared with what was last yielded per key, so only what changed meanwhile is
    yielded (by content, not revision: a server that lost its state starts revisions again).
    """
    kv = await status_bucket(js)
    subject = naming.status_key(sandbox_id) if sandbox_id else ">"
    tell = on_unreadable or log_unreadable
    yielded: dict[str, int] = {}  # key -> hash of the value last yielded or reported unreadable (0: removed)
    marked = False
    while True:
        seen_reconnects = reconnects()
        with boundary(f"watching the {naming.STATUS_BUCKET} bucket"):
            watcher = await kv.watch(subject)
        replay = ReplayEnd(watcher)
        try:
            while reconnects() == seen_reconnects:
                try:
                    entry = await watcher.updates(timeout=CLOSED_CHECK_S)  # type: ignore[no-untyped-call]
                except TimeoutError:  # nats' or asyncio's: a quiet second
                    if closed():
                        raise BrokerUnavailable("the connection to NATS closed; the watch ended") from None
                    continue
                if entry is not None and (change := _change(entry, yielded, tell)) is not None:
                    yield change
                with boundary(f"watching the {naming.STATUS_BUCKET} bucket"):
                    ended = await replay.ends(entry)  # nats-py's own marker can come before the values
                if ended and not marked:
                    marked = True
                    yield None
        finally:
            # The connection may be closed already (a caller that broke out of its loop and closed the client
            # before the generator was finalised): the server drops the watch's consumer with the connection.
            with anyio.CancelScope(shield=True), anyio.move_on_after(2), contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]


def _change(entry: KeyValue.Entry, yielded: dict[str, int], tell: OnUnreadable) -> Change | None:
    """What ``entry`` changes (``None``: nothing new, or a value that does not parse, told to ``tell``)."""
    value = None if entry.operation in ("DEL", "PURGE") else entry.value
    fingerprint = hash(bytes(value)) if value else 0
    if yielded.get(entry.key) == fingerprint:
        return None  # the same as last yielded: a restarted watch's current state
    yielded[entry.key] = fingerprint
    if not value:
        return Change(entry.key, None, int(entry.revision or 0))
    try:
        status = _parse(entry.key, value, revision=entry.revision)
    except StatusUnreadable as unreadable:
        tell(unreadable)
        return None
    return Change(entry.key, status, int(entry.revision or 0))


def log_unreadable(unreadable: StatusUnreadable) -> None:
    """What a list or a watch does with a record it cannot parse when its caller says nothing: a warning."""
    log.warning(
        "skipped the status record %s (revision %s): not one this client can read",
        quote(unreadable.sandbox_id, KEY_LIMIT),
        unreadable.revision,
    )


def _parse(key: str, value: bytes, *, revision: int | None = None) -> SandboxStatus:
    try:
        return SandboxStatus.model_validate_json(value)
    except ValidationError as exc:
        raise StatusUnreadable(  # the key, cut (one written straight into the bucket may be long); never the value
            f"the status of {clip(key, KEY_LIMIT)} is not a SandboxStatus record (a newer sandboxd?)",
            sandbox_id=key,
            revision=revision,
        ) from exc

"""Intake: turn delivered events into the desired state, or into a clear rejection.

For the events of one sandbox (in stream order), intake validates each, folds the valid ones into the stored
desired state and writes the result once with compare-and-set (``reconcile.cas``). The fold (``fold``) is pure:
it returns the verdicts and the new state, or the owner claim it needs first; ``Intake`` does the I/O around
it (reads the tombstone, makes the claims with the same compare-and-set writer, writes the state).

Ordering assumption: the caller hands one sandbox's events to one ``admit`` call at a time (the runtime groups a
fetched batch by sandbox id); other replicas may write the same key concurrently, which the compare-and-set
detects, and then the whole fold is redone on the fresh record.

An event older (by stream sequence) than the stored desired state is *stale*: it changes nothing and is
acknowledged. An event whose sequence equals the stored one was already recorded (a redelivery after a failed
reconcile): it changes nothing but still asks for a reconcile.

A create (or update) onto nothing or onto a deleted sandbox begins a new *incarnation* (the event's stream
sequence), so nothing rendered or recorded for an earlier life of the sandbox id is mistaken for this one. Once
a deletion is done the desired state is gone, and the status record (the tombstone) is what remains: a new life
continues from its generation (generations never go backwards), and an event at or before its stream sequence
(a redelivery of the deleted life's events) is stale, so it cannot bring the deleted sandbox back.

Each event gets a ``process sandbox.<verb>.*`` span, a child of its publisher's ``traceparent`` header. The
desired state keeps the event's trace parent (the CloudEvents ``traceparent`` attribute, else the header, else
the process span's own) so the reconcile it causes joins the same trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from opentelemetry.trace import Tracer
from pydantic import ValidationError

from sandboxd import naming
from sandboxd.errors import (
    AwaitingCreate,
    InvalidEvent,
    OwnershipConflict,
    PermanentError,
    SandboxdError,
    StoreConflict,
)
from sandboxd.models.base import describe
from sandboxd.models.bounds import clip, quote
from sandboxd.models.desired import DesiredState, Lifecycle, OwnerClaim
from sandboxd.models.events import (
    CreateEvent,
    DeleteEvent,
    ResumeEvent,
    SandboxEvent,
    SuspendEvent,
    UpdateEvent,
    parse_event,
)
from sandboxd.naming import SandboxId
from sandboxd.reconcile import cas, statuses
from sandboxd.reconcile.ports import Clock, EventLog, InboundEvent, Store
from sandboxd.reconcile.statuses import StatusWriter
from sandboxd.telemetry import logs, tracing

log = logging.getLogger(__name__)

MAX_FOLD_ATTEMPTS = 10


class _RecordedMeanwhile(Exception):
    """Another replica recorded the desired state after this fold read it: fold again."""


class Verdict(StrEnum):
    ACCEPTED = "accepted"  # desired state recorded (or already recorded): reconcile, then ack
    STALE = "stale"  # older than the recorded state: ack, nothing to do
    REJECTED = "rejected"  # invalid: dead-letter with the reason, then term
    WAITING = "waiting"  # an earlier create is still on its way (``AwaitingCreate``): retried, as a failure is


@dataclass(frozen=True, slots=True)
class Earlier:
    """What a sandbox id's status shows of its earlier lives: a new one continues past both."""

    generation: int = 0
    sequence: int = 0


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict
    sandbox_id: SandboxId | None
    error: PermanentError | AwaitingCreate | None = None
    event_id: str | None = None
    #: A rejected event older than the recorded desired state (it reached this replica after a newer one was
    #: recorded): its status keeps the newer event's ``Accepted`` and says why in ``lastError`` only.
    superseded: bool = False


def sandbox_id_of(subject: str) -> SandboxId | None:
    """The sandbox id a subject names, if it names a valid one (used to group and to report rejections)."""
    parsed = naming.parse_event_subject(subject)
    return None if parsed is None else naming.as_sandbox_id(parsed[1])


def validate(event: InboundEvent) -> SandboxEvent:
    """Parse one event and check it agrees with its subject; ``InvalidEvent`` says what is wrong."""
    parsed = naming.parse_event_subject(event.subject)
    if parsed is None or parsed[0] not in naming.VERBS:
        raise InvalidEvent(f"subject {quote(event.subject)} is not sandbox.<verb>.<sandbox-id>")
    verb, subject_id = parsed
    try:
        body = parse_event(event.data)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid {verb} event: {describe(exc)}") from exc
    if body.subject != subject_id:
        raise InvalidEvent(f"event subject {body.subject!r} does not match the NATS subject id {subject_id!r}")
    if body.verb != verb:
        raise InvalidEvent(f"event type {body.type!r} does not match the NATS subject verb {verb!r}")
    header_id = _event_id(event)
    if header_id is not None and header_id != body.id:
        raise InvalidEvent(f"Nats-Msg-Id {quote(header_id)} does not match the CloudEvents id {body.id!r}")
    return body


@dataclass(frozen=True, slots=True)
class Claim:
    """An owner claim a fold needs before it can accept a create or update: ``uid`` for ``sandbox_id``."""

    uid: str
    email: str
    sandbox_id: SandboxId


#: What the claims made so far came to: ``None`` held, else the conflict that refused it.
Claims = Mapping[Claim, OwnershipConflict | None]


@dataclass(frozen=True, slots=True)
class Folded:
    """A fold's result: a verdict per event and the state to write, or the owner claim it needs first."""

    verdicts: tuple[Admission, ...]
    state: DesiredState | None
    needs: Claim | None = None


def fold(
    sandbox_id: SandboxId,
    stored: DesiredState | None,
    events: Sequence[InboundEvent],
    *,
    earlier: Earlier,
    now: datetime,
    traceparent_of: Callable[[int], str | None],
    claims: Claims,
) -> Folded:
    """Fold events (in stream order) onto the stored state: pure, no I/O.

    ``earlier`` is what the status shows of the id's earlier lives (read by the caller when nothing is stored),
    ``claims`` the owner claims already made, ``traceparent_of(index)`` the trace parent of event ``index``
    when the event carries none of its own. A create or update whose owner claim is not among them stops the
    fold: it returns that claim as ``needs`` and the caller makes it and folds again.
    """
    state = stored
    verdicts: list[Admission] = []
    for index, event in enumerate(events):
        if (state is None and event.stream_sequence <= earlier.sequence) or (  # a redelivery after the deletion
            state is not None and event.stream_sequence < state.sequence
        ):
            verdicts.append(_superseded(sandbox_id, event))
            continue
        if state is not None and event.stream_sequence == state.sequence:
            verdicts.append(Admission(Verdict.ACCEPTED, sandbox_id, event_id=state.event_id))
            continue
        try:
            body = validate(event)
            if isinstance(body, CreateEvent | UpdateEvent):
                owner = _owner(body.subject, body.data.spec.owner.email, state)
                if isinstance(owner, Claim):
                    if owner not in claims:
                        return Folded(tuple(verdicts), state, needs=owner)
                    refused = claims[owner]
                    if refused is not None:
                        raise refused
                    owner = owner.uid
            else:
                owner = None
            state = _apply(
                state,
                body,
                owner_uid=owner,
                earlier=earlier,
                sequence=event.stream_sequence,
                accepted_at=now,
                traceparent=body.traceparent or traceparent_of(index),
            )
        except PermanentError as exc:
            verdicts.append(Admission(Verdict.REJECTED, sandbox_id, exc, _event_id(event)))
            continue
        verdicts.append(Admission(Verdict.ACCEPTED, sandbox_id, event_id=body.id))
    return Folded(tuple(verdicts), state)


def _superseded(sandbox_id: SandboxId, event: InboundEvent) -> Admission:
    """An event older than what is recorded changes nothing (stale), unless it is invalid: whichever replica saw
    it first, a malformed event is dead-lettered, never acknowledged in silence."""
    try:
        validate(event)
    except InvalidEvent as exc:
        return Admission(Verdict.REJECTED, sandbox_id, exc, _event_id(event), superseded=True)
    return Admission(Verdict.STALE, sandbox_id)


def _apply(
    state: DesiredState | None,
    event: SandboxEvent,
    *,
    owner_uid: str | None,
    earlier: Earlier,
    sequence: int,
    accepted_at: datetime,
    traceparent: str | None,
) -> DesiredState:
    """The state one valid event makes of ``state`` (``owner_uid``: the claimed owner of a create or update)."""
    common = {"sequence": sequence, "event_id": event.id, "accepted_at": accepted_at, "traceparent": traceparent}
    if isinstance(event, CreateEvent | UpdateEvent):
        assert owner_uid is not None
        # After nothing or after a delete, a create begins a new life (incarnation) of the sandbox id.
        ongoing = state if state is not None and state.lifecycle is not Lifecycle.DELETED else None
        suspended = ongoing is not None and ongoing.lifecycle is Lifecycle.SUSPENDED
        return DesiredState(
            sandbox_id=event.subject,
            spec=event.data.spec,
            owner_uid=owner_uid,
            generation=(state or earlier).generation + 1,
            incarnation=ongoing.incarnation if ongoing else sequence,
            lifecycle=Lifecycle.SUSPENDED if suspended else Lifecycle.ACTIVE,
            idle_since=ongoing.idle_since if ongoing else None,
            **common,
        )
    if state is None or state.lifecycle is Lifecycle.DELETED:
        if isinstance(event, DeleteEvent) and state is not None:
            return state.model_copy(update={"sequence": sequence, "purge": state.purge or event.data.purge})
        raise InvalidEvent(f"sandbox {event.subject} does not exist; {event.verb} needs a create first")
    changed = {**common, "generation": state.generation + 1}
    if isinstance(event, DeleteEvent):
        return state.model_copy(
            update={**changed, "lifecycle": Lifecycle.DELETED, "purge": event.data.purge or state.purge}
        )
    if isinstance(event, SuspendEvent):
        return state.model_copy(update={**changed, "lifecycle": Lifecycle.SUSPENDED})
    assert isinstance(event, ResumeEvent)
    return state.model_copy(update={**changed, "lifecycle": Lifecycle.ACTIVE, "idle_since": None})


def _owner(sandbox_id: SandboxId, email: str, state: DesiredState | None) -> str | Claim:
    """The owner-uid the sandbox keeps, or the claim that makes it the sandbox's: one owner-uid, one sandbox,
    one email. ``OwnershipConflict`` when the owner would change."""
    uid = naming.owner_uid(email)
    if state is not None and state.lifecycle is not Lifecycle.DELETED:
        if state.owner_uid != uid.value:
            raise OwnershipConflict(
                f"the owner of sandbox {sandbox_id} cannot change (owner-uid {state.owner_uid} → {uid.value}); "
                "delete it and create a new sandbox"
            )
        if state.spec.owner.email.strip().lower() == uid.email:
            return uid.value  # claimed when this sandbox was created
    return Claim(uid=uid.value, email=uid.email, sandbox_id=sandbox_id)


def claimed(current: OwnerClaim | None, claim: Claim) -> OwnerClaim | None:
    """The owner claim to write for ``claim`` (``None``: already held), or ``OwnershipConflict``."""
    if current is not None and current.sandbox_id != claim.sandbox_id:
        if current.email != claim.email:
            raise OwnershipConflict(  # never the other owner's email nor sandbox: every console reads this
                f"owner {claim.email} maps to owner-uid {claim.uid}, which another sandbox already has for "
                "a different email; use a distinct email"
            )
        raise OwnershipConflict(
            f"owner {claim.email} already has sandbox {current.sandbox_id}; "
            "an owner has one sandbox (update or delete it)"
        )
    if current is not None and current.email == claim.email:
        return None
    return OwnerClaim(sandbox_id=claim.sandbox_id, email=claim.email)


class Intake:
    def __init__(
        self,
        *,
        desired: Store[DesiredState],
        owners: Store[OwnerClaim],
        status: StatusWriter,
        clock: Clock,
        events: EventLog | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._desired = desired
        self._owners = owners
        self._status = status
        self._clock = clock
        self._events = events
        self._tracer = tracer

    async def admit(self, sandbox_id: SandboxId, events: Sequence[InboundEvent]) -> list[Admission]:
        """Admit one sandbox's events (stream order); one verdict per event, in the same order."""
        ordered = sorted(events, key=lambda e: e.stream_sequence)
        with (
            logs.bound(sandbox_id=sandbox_id),
            tracing.Processing(self._tracer, ordered, sandbox_id=sandbox_id) as spans,
        ):
            verdicts = await self._admit(sandbox_id, ordered, spans)
            if self._tracer is not None:
                for index, verdict in enumerate(verdicts):
                    error = verdict.error
                    spans.settle(
                        index,
                        verdict.verdict,
                        error_type=error.reason if error else None,
                        description=error.message if error else "",
                    )
        return verdicts

    async def _admit(
        self, sandbox_id: SandboxId, events: Sequence[InboundEvent], spans: tracing.Processing
    ) -> list[Admission]:
        """Fold and write once with compare-and-set (``reconcile.cas``); the I/O a fold needs happens here.

        A sandbox this process does not remember, whose events open with a create, is most likely new: the
        first attempt folds onto nothing and writes with a blind create (``blind``)."""
        folded = Folded((), None)

        async def decide(stored: DesiredState | None) -> DesiredState | None:
            nonlocal folded
            earlier = await self._earlier_life(sandbox_id) if stored is None else Earlier()
            create = await self._create_on_its_way(sandbox_id, stored, earlier, events)
            now_events = events if create is None else [e for e in events if e.stream_sequence <= create]
            claims: dict[Claim, OwnershipConflict | None] = {}
            while True:
                folded = fold(
                    sandbox_id,
                    stored,
                    now_events,
                    earlier=earlier,
                    now=self._clock(),
                    traceparent_of=spans.traceparent,
                    claims=claims,
                )
                if folded.needs is None:
                    break
                claims[folded.needs] = await self._claim(folded.needs)
            if create is not None:
                folded = Folded(folded.verdicts + _waiting(sandbox_id, events, create), folded.state)
            state = folded.state
            return state if state is not None and state != stored else None

        key = naming.desired_key(sandbox_id)
        for _ in range(MAX_FOLD_ATTEMPTS):
            try:
                await cas.write(
                    self._desired,
                    key,
                    decide,
                    start=self._desired.recent(key),
                    blind=_opens_with_create(events),
                    attempts=MAX_FOLD_ATTEMPTS,
                    gave_up=f"desired state of {sandbox_id} kept changing; gave up after {MAX_FOLD_ATTEMPTS}",
                )
                break
            except _RecordedMeanwhile:  # fold again onto what another replica recorded
                continue
        else:
            raise StoreConflict(f"desired state of {sandbox_id} kept changing; gave up after {MAX_FOLD_ATTEMPTS}")
        verdicts = list(folded.verdicts)
        await self._record_rejections(sandbox_id, verdicts)
        return verdicts

    async def _create_on_its_way(
        self, sandbox_id: SandboxId, stored: DesiredState | None, earlier: Earlier, events: Sequence[InboundEvent]
    ) -> int | None:
        """The stream sequence of a valid create these events must wait for, if any.

        Replicas share the consumer, so a sandbox's create and the suspend (or delete, or update) right behind it
        can reach two replicas, and the later one can reach intake first. Folded onto nothing, it would be
        refused ("does not exist") or begin a life of its own, and the create would then be stale: the order the
        publisher chose would be lost. So when the first event that is not stale is not a create and nothing
        live is recorded, the stream is asked (one request, only then) for a create between what is recorded
        and that event; if a valid one is there, the events after it wait for it to be recorded."""
        if self._events is None or (stored is not None and stored.lifecycle is not Lifecycle.DELETED):
            return None
        floor = stored.sequence if stored is not None else earlier.sequence
        live = [e for e in events if e.stream_sequence > floor]
        if not live or _verb(live[0]) == "create":
            return None
        create = await self._events.create_after(sandbox_id, floor)
        if create is None or create.stream_sequence >= live[0].stream_sequence:
            return None
        try:
            validate(create)
        except InvalidEvent:  # it was (or will be) dead-lettered: nothing to wait for
            return None
        if not await self._events.settled(create.stream_sequence):
            return create.stream_sequence
        # Settled: dead-lettered (or an earlier life's, its tombstone expired), or recorded after what was read
        # here. The desired state is written before the create is acked, so a read now tells which.
        now = await self._desired.get(naming.desired_key(sandbox_id))
        if (now.value if now is not None else None) != stored:
            raise _RecordedMeanwhile
        return None

    async def _claim(self, claim: Claim) -> OwnershipConflict | None:
        """Make ``claim`` (blind create first: the usual case is a new owner); the conflict that refused it."""

        held: OwnerClaim | None = None

        async def decide(current: OwnerClaim | None) -> OwnerClaim | None:
            nonlocal held
            held = current
            return claimed(current, claim)

        try:
            await cas.write(
                self._owners,
                naming.owner_key(claim.uid),
                decide,
                start=None,
                blind=True,
                attempts=MAX_FOLD_ATTEMPTS,
                gave_up=f"owner claim {claim.uid} kept changing",
            )
        except OwnershipConflict as refused:
            if held is not None:  # the log is the operator's: it may name the sandbox that holds the owner-uid
                log.info(
                    "owner-uid %s for sandbox %s refused: sandbox %s holds it",
                    claim.uid,
                    claim.sandbox_id,
                    held.sandbox_id,
                )
            return refused
        return None

    async def _earlier_life(self, sandbox_id: SandboxId) -> Earlier:
        """What the status record (the tombstone, once a deletion is done and its desired state removed) shows
        of an earlier life of this sandbox id: nothing older than it may come back, and generations go on."""
        shown = await self._status.read(sandbox_id)
        if shown is None:
            return Earlier()
        return Earlier(generation=shown.observed_generation, sequence=shown.observed_sequence)

    async def gave_up(
        self, sandbox_id: SandboxId, events: Sequence[InboundEvent], error: SandboxdError, *, note: str = ""
    ) -> None:
        """Events intake failed on for good (a refusal, or the last retry) are dead-lettered unrecorded: the status
        says why, as it does for a rejected event. Best effort: the status store may be what failed."""
        last = max(events, key=lambda e: e.stream_sequence)
        message = clip(f"{error.message} ({note})" if note else error.message)
        try:
            await self._status.write(
                sandbox_id,
                lambda prev: statuses.rejected(
                    prev,
                    sandbox_id=sandbox_id,
                    error=error,
                    event_id=_event_id(last),
                    now=self._clock(),
                    message=message,
                ),
            )
        except SandboxdError as exc:
            log.warning("status of %s could not say why its events were dead-lettered: %s", sandbox_id, exc.message)

    async def _record_rejections(self, sandbox_id: SandboxId, verdicts: list[Admission]) -> None:
        for verdict in verdicts:
            if verdict.verdict is Verdict.REJECTED and verdict.error is not None:
                error = verdict.error
                await self._status.write(
                    sandbox_id,
                    lambda prev, e=error, v=verdict: statuses.rejected(  # type: ignore[misc]
                        prev,
                        sandbox_id=sandbox_id,
                        error=e,
                        event_id=v.event_id,
                        now=self._clock(),
                        superseded=v.superseded,
                    ),
                )


def _verb(event: InboundEvent) -> str | None:
    parsed = naming.parse_event_subject(event.subject)
    return None if parsed is None else parsed[0]


def _opens_with_create(events: Sequence[InboundEvent]) -> bool:
    return bool(events) and _verb(events[0]) == "create"


def _waiting(sandbox_id: SandboxId, events: Sequence[InboundEvent], create: int) -> tuple[Admission, ...]:
    error = AwaitingCreate(f"sandbox {sandbox_id}: waiting for its create (event {create}) to be recorded first")
    return tuple(
        Admission(Verdict.WAITING, sandbox_id, error, _event_id(event))
        for event in events
        if event.stream_sequence > create
    )


def _event_id(event: InboundEvent) -> str | None:
    return event.headers.get("Nats-Msg-Id")

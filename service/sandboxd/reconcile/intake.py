"""Intake: turn delivered events into the desired state, or into a clear rejection.

For the events of one sandbox (in stream order), intake validates each, folds the valid ones into the stored
desired state and writes the result once with compare-and-set. Ordering assumption: the caller hands one
sandbox's events to one ``admit`` call at a time (the runtime groups a fetched batch by sandbox id); other
replicas may write the same key concurrently, which the compare-and-set detects, and then the whole fold is
redone on the fresh record.

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

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from opentelemetry.trace import Tracer
from pydantic import ValidationError

from sandboxd import naming
from sandboxd.errors import InvalidEvent, OwnershipConflict, PermanentError, StoreConflict
from sandboxd.models.base import describe
from sandboxd.models.bounds import quote
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
from sandboxd.reconcile import statuses
from sandboxd.reconcile.ports import Clock, InboundEvent, Store, Versioned
from sandboxd.reconcile.statuses import StatusWriter
from sandboxd.telemetry import logs, tracing

MAX_FOLD_ATTEMPTS = 10


class Verdict(StrEnum):
    ACCEPTED = "accepted"  # desired state recorded (or already recorded): reconcile, then ack
    STALE = "stale"  # older than the recorded state: ack, nothing to do
    REJECTED = "rejected"  # invalid: dead-letter with the reason, then term


@dataclass(frozen=True, slots=True)
class Earlier:
    """What a sandbox id's status shows of its earlier lives: a new one continues past both."""

    generation: int = 0
    sequence: int = 0


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict
    sandbox_id: str | None
    error: PermanentError | None = None
    event_id: str | None = None


def sandbox_id_of(subject: str) -> str | None:
    """The sandbox id a subject names, if it names a valid one (used to group and to report rejections)."""
    parsed = naming.parse_event_subject(subject)
    if parsed is None or not naming.is_sandbox_id(parsed[1]):
        return None
    return parsed[1]


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
    header_id = event.headers.get("Nats-Msg-Id")
    if header_id is not None and header_id != body.id:
        raise InvalidEvent(f"Nats-Msg-Id {quote(header_id)} does not match the CloudEvents id {body.id!r}")
    return body


class Intake:
    def __init__(
        self,
        *,
        desired: Store[DesiredState],
        owners: Store[OwnerClaim],
        status: StatusWriter,
        clock: Clock,
        tracer: Tracer | None = None,
    ) -> None:
        self._desired = desired
        self._owners = owners
        self._status = status
        self._clock = clock
        self._tracer = tracer

    async def admit(self, sandbox_id: str, events: Sequence[InboundEvent]) -> list[Admission]:
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
        self, sandbox_id: str, events: Sequence[InboundEvent], spans: tracing.Processing
    ) -> list[Admission]:
        key = naming.desired_key(sandbox_id)
        stored = self._desired.recent(key)
        # A sandbox this process does not remember, whose events open with a create, is most likely new: fold
        # onto nothing and write with a blind create. Only a successful create proves that guess; anything
        # else (the create fails because the record exists, or there is nothing to write) reads and folds again.
        guess_new = stored is None and _opens_with_create(events)
        for _ in range(MAX_FOLD_ATTEMPTS):
            if stored is None and not guess_new:
                stored = await self._desired.get(key)
            verdicts, state = await self._fold(sandbox_id, stored, events, spans)
            if state is not None and (stored is None or state != stored.value):
                try:
                    await self._desired.put(key, state, revision=stored.revision if stored else None)
                except StoreConflict:
                    stored, guess_new = None, False
                    continue
            elif guess_new:
                guess_new = False
                continue
            await self._record_rejections(sandbox_id, verdicts)
            return verdicts
        raise StoreConflict(f"desired state of {sandbox_id} kept changing; gave up after {MAX_FOLD_ATTEMPTS}")

    async def _fold(
        self,
        sandbox_id: str,
        stored: Versioned[DesiredState] | None,
        events: Sequence[InboundEvent],
        spans: tracing.Processing,
    ) -> tuple[list[Admission], DesiredState | None]:
        """Fold events (in stream order) into the stored state; a verdict per event, the state to write."""
        state = stored.value if stored else None
        earlier: Earlier | None = None  # read only when the fold starts from nothing
        verdicts: list[Admission] = []
        for index, event in enumerate(events):
            if state is None:
                earlier = earlier or await self._earlier_life(sandbox_id)
                if event.stream_sequence <= earlier.sequence:  # e.g. a redelivery after the deletion was done
                    verdicts.append(Admission(Verdict.STALE, sandbox_id))
                    continue
            if state is not None and event.stream_sequence < state.sequence:
                verdicts.append(Admission(Verdict.STALE, sandbox_id))
                continue
            if state is not None and event.stream_sequence == state.sequence:
                verdicts.append(Admission(Verdict.ACCEPTED, sandbox_id, event_id=state.event_id))
                continue
            try:
                body = validate(event)
                state = await self._apply(
                    state,
                    body,
                    sequence=event.stream_sequence,
                    earlier=earlier or Earlier(),
                    traceparent=spans.traceparent(index),
                )
            except PermanentError as exc:
                verdicts.append(Admission(Verdict.REJECTED, sandbox_id, exc, _event_id(event)))
                continue
            verdicts.append(Admission(Verdict.ACCEPTED, sandbox_id, event_id=body.id))
        return verdicts, state

    async def _apply(
        self,
        state: DesiredState | None,
        event: SandboxEvent,
        *,
        sequence: int,
        earlier: Earlier,
        traceparent: str | None = None,
    ) -> DesiredState:
        common = {
            "sequence": sequence,
            "event_id": event.id,
            "accepted_at": self._clock(),
            "traceparent": event.traceparent or traceparent,
        }
        if isinstance(event, CreateEvent | UpdateEvent):
            uid = await self._claim_owner(event.subject, event.data.spec.owner.email, state)
            # After nothing or after a delete, a create begins a new life (incarnation) of the sandbox id.
            ongoing = state if state is not None and state.lifecycle is not Lifecycle.DELETED else None
            suspended = ongoing is not None and ongoing.lifecycle is Lifecycle.SUSPENDED
            return DesiredState(
                sandbox_id=event.subject,
                spec=event.data.spec,
                owner_uid=uid,
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

    async def _earlier_life(self, sandbox_id: str) -> Earlier:
        """What the status record (the tombstone, once a deletion is done and its desired state removed) shows
        of an earlier life of this sandbox id: nothing older than it may come back, and generations go on."""
        shown = await self._status.read(sandbox_id)
        if shown is None:
            return Earlier()
        return Earlier(generation=shown.observed_generation, sequence=shown.observed_sequence)

    async def _claim_owner(self, sandbox_id: str, email: str, state: DesiredState | None) -> str:
        """Make the owner-uid this sandbox's, or refuse: one owner-uid, one sandbox, one email."""
        uid = naming.owner_uid(email)
        if state is not None and state.lifecycle is not Lifecycle.DELETED:
            if state.owner_uid != uid.value:
                raise OwnershipConflict(
                    f"the owner of sandbox {sandbox_id} cannot change (owner-uid {state.owner_uid} → {uid.value}); "
                    "delete it and create a new sandbox"
                )
            if state.spec.owner.email.strip().lower() == uid.email:
                return uid.value  # claimed when this sandbox was created
        key = naming.owner_key(uid.value)
        claim: Versioned[OwnerClaim] | None = None
        for attempt in range(MAX_FOLD_ATTEMPTS):
            if attempt:  # the first try is a blind create: the usual case is a new owner
                claim = await self._owners.get(key)
            if claim is not None and claim.value.sandbox_id != sandbox_id:
                if claim.value.email != uid.email:
                    raise OwnershipConflict(
                        f"owner {uid.email} maps to owner-uid {uid.value}, which already belongs to "
                        f"{claim.value.email} (sandbox {claim.value.sandbox_id}); use a distinct email"
                    )
                raise OwnershipConflict(
                    f"owner {uid.email} already has sandbox {claim.value.sandbox_id}; "
                    "an owner has one sandbox (update or delete it)"
                )
            if claim is not None and claim.value.email == uid.email:
                return uid.value
            try:
                await self._owners.put(
                    key,
                    OwnerClaim(sandbox_id=sandbox_id, email=uid.email),
                    revision=claim.revision if claim else None,
                )
            except StoreConflict:
                continue
            return uid.value
        raise StoreConflict(f"owner claim {uid.value} kept changing")

    async def _record_rejections(self, sandbox_id: str, verdicts: list[Admission]) -> None:
        for verdict in verdicts:
            if verdict.verdict is Verdict.REJECTED and verdict.error is not None:
                error = verdict.error
                await self._status.write(
                    sandbox_id,
                    lambda prev, e=error, v=verdict: statuses.rejected(  # type: ignore[misc]
                        prev, sandbox_id=sandbox_id, error=e, event_id=v.event_id, now=self._clock()
                    ),
                )


def _opens_with_create(events: Sequence[InboundEvent]) -> bool:
    parsed = naming.parse_event_subject(events[0].subject) if events else None
    return parsed is not None and parsed[0] == "create"


def _event_id(event: InboundEvent) -> str | None:
    return event.headers.get("Nats-Msg-Id")

"""Where an event's fate is decided: callers report what happened, ``decide`` alone says ack, nak or dead-letter.

The callers (the consume loop for intake, the keyed queue for a reconcile pass, the scaler for a scale command)
never ack, nak or term themselves; they report an ``Outcome`` and ``Disposition.settle`` carries out the
decision. The whole table (``decide``, pure; ``delivered`` counts this delivery, 1 for the first)::

    outcome                              delivered < max_deliver - 1        delivered >= max_deliver - 1
    done, stale                          ack                                ack
    failed, PermanentError               dead-letter, then term             dead-letter, then term
    failed, RetryableError               nak after the backoff delay        dead-letter ("gave up after N"), term
    failed, any other exception          as RetryableError (UnexpectedError, its class name only)
    shutting down (work not started)     nak, no delay (another replica)    nak, no delay

Dead-lettering starts one delivery before the consumer's last, so the last one is a spare: a dead letter that
cannot be written (the broker is down, the copy is refused) is nak'd with the backoff instead of terminated,
because an event is terminated only once a durable copy exists. If even the spare fails, JetStream stops
delivering it and the dead-letter mover (``adapters.jetstream.advisories``) copies it from its advisory.
``max_deliver`` of 0 or less means unlimited: nothing is given up on.

The backoff (``retry.Backoff``) grows with the larger of the caller's count of consecutive failures and the
delivery's own count, so it keeps growing across redeliveries to other replicas; a ``RetryableError.delay``
from the source (a Retry-After) is its floor. A settlement that fails (an ack on a closed connection) is logged
and counted: the event is redelivered, which is harmless because every effect is idempotent.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from sandboxd.errors import PermanentError, RetryableError, SandboxdError, UnexpectedError
from sandboxd.reconcile.ports import DeadLetters, Delivery
from sandboxd.runtime.retry import Backoff
from sandboxd.telemetry.metrics import Instruments, noop_instruments

log = logging.getLogger(__name__)


class Happened(StrEnum):
    DONE = "done"  # the effect is durable (desired state written; pass applied and status written)
    STALE = "stale"  # an older event the recorded desired state already supersedes
    FAILED = "failed"  # see the error
    SHUTTING_DOWN = "shutting-down"  # the work did not start: hand it to another replica


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to the work a delivery (or a batch of them) asked for."""

    happened: Happened
    error: SandboxdError | None = None
    #: Consecutive failures the caller counted for this work (the queue's per-sandbox count); 0 if it keeps none.
    failures: int = 0

    @classmethod
    def failed(cls, error: BaseException, *, where: str, failures: int = 0) -> Outcome:
        """``where`` names the step, for an exception outside the tree (``UnexpectedError``)."""
        if not isinstance(error, SandboxdError):
            error = UnexpectedError.wrapping(error, where=where)
        return cls(Happened.FAILED, error, failures)

    @property
    def retried(self) -> bool:
        """A transient failure: the work is tried again after the backoff (unless its deliveries ran out)."""
        return self.happened is Happened.FAILED and not isinstance(self.error, PermanentError)


DONE = Outcome(Happened.DONE)
STALE = Outcome(Happened.STALE)
SHUTTING_DOWN = Outcome(Happened.SHUTTING_DOWN)


class Action(StrEnum):
    ACK = "ack"
    NAK = "nak"  # after ``delay``
    DEAD_LETTER = "dead_letter"  # then term
    HAND_BACK = "hand_back"  # nak without delay


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay: float | None = None
    error: SandboxdError | None = None
    note: str = ""

    @property
    def dead_lettered(self) -> bool:
        """Whether the delivery goes to the dead letters (if the copy fails, it is retried instead)."""
        return self.action is Action.DEAD_LETTER


def last_chance(delivered: int, max_deliver: int) -> bool:
    """Whether this delivery is the last the runtime retries (the consumer's last one is the spare)."""
    return max_deliver > 0 and delivered >= max_deliver - 1


def decide(outcome: Outcome, *, delivered: int, max_deliver: int, delay: float) -> Decision:
    """The decision table above, for one delivery; ``delay`` is the backoff a retry would wait."""
    if outcome.happened in (Happened.DONE, Happened.STALE):
        return Decision(Action.ACK)
    if outcome.happened is Happened.SHUTTING_DOWN:
        return Decision(Action.HAND_BACK)
    error = outcome.error or UnexpectedError("a failure without an error")
    if isinstance(error, PermanentError):
        return Decision(Action.DEAD_LETTER, error=error)
    if last_chance(delivered, max_deliver):
        return Decision(Action.DEAD_LETTER, error=error, note=f"gave up after {delivered} deliveries")
    return Decision(Action.NAK, delay=delay, error=error)


@dataclass(frozen=True, slots=True)
class Settlement:
    decisions: tuple[Decision, ...]
    #: The backoff a retried outcome earned (also for work without deliveries, e.g. a resync kick); else None.
    delay: float | None


class Disposition:
    """Carries out ``decide`` for every delivery it is given, exactly once each; never raises."""

    def __init__(
        self,
        *,
        dead_letters: DeadLetters,
        backoff: Backoff,
        max_deliver: int,
        metrics: Instruments | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._dead_letters = dead_letters
        self._backoff = backoff
        self._max_deliver = max_deliver
        self._metrics = metrics or noop_instruments()
        self._rng = rng
        self.counts: dict[str, int] = {"ack": 0, "nak": 0, "term": 0, "dead_letter": 0, "dead_letter_failed": 0}
        if metrics is not None:
            metrics.watch_settlements(lambda: self.counts)

    async def settle(self, deliveries: Iterable[Delivery], outcome: Outcome) -> Settlement:
        deliveries = list(deliveries)
        delay = self._delay(outcome, deliveries) if outcome.retried else None
        if outcome.retried and outcome.error is not None:
            self._metrics.retried(outcome.error.reason)
        decisions = []
        for delivery in deliveries:
            decision = decide(
                outcome, delivered=delivery.num_delivered, max_deliver=self._max_deliver, delay=delay or 0
            )
            await self._carry_out(delivery, decision)
            decisions.append(decision)
        return Settlement(tuple(decisions), delay)

    def _delay(self, outcome: Outcome, deliveries: list[Delivery]) -> float:
        failures = max([outcome.failures, *(d.num_delivered for d in deliveries)])
        hint = outcome.error.delay if isinstance(outcome.error, RetryableError) else None
        return self._backoff.delay(failures, hint=hint, rng=self._rng)

    async def _carry_out(self, delivery: Delivery, decision: Decision) -> None:
        if decision.action is Action.ACK:
            await self._settle(delivery, "ack")
        elif decision.action is Action.NAK:
            await self._settle(delivery, "nak", decision.delay)
        elif decision.action is Action.HAND_BACK:
            await self._settle(delivery, "nak")
        else:
            await self._dead_letter(delivery, decision)

    async def _dead_letter(self, delivery: Delivery, decision: Decision) -> None:
        error = decision.error or UnexpectedError("dead-lettered without an error")
        message = f"{error.message} ({decision.note})" if decision.note else error.message
        try:
            await self._dead_letters.send(delivery, reason=error.reason, message=message)
        except Exception as exc:  # noqa: BLE001 - no durable copy: never term; the spare delivery tries again
            self.counts["dead_letter_failed"] += 1
            self._metrics.retried("DeadLetterFailed")
            log.warning(
                "could not dead-letter event %d (%s): %s; it is redelivered",
                delivery.stream_sequence,
                error.reason,
                exc.message if isinstance(exc, SandboxdError) else exc.__class__.__name__,
            )
            await self._settle(delivery, "nak", self._backoff.delay(delivery.num_delivered, rng=self._rng))
            return
        self.counts["dead_letter"] += 1
        self._metrics.dead_lettered(error.reason)
        await self._settle(delivery, "term")

    async def _settle(self, delivery: Delivery, kind: str, delay: float | None = None) -> None:
        try:
            if kind == "ack":
                await delivery.ack()
            elif kind == "nak":
                await delivery.nak(delay)
            else:
                await delivery.term()
        except Exception as exc:  # noqa: BLE001 - a lost settlement only means a redelivery, which is idempotent
            log.warning("could not %s a delivery: %s", kind, exc.__class__.__name__)
            return
        self.counts[kind] += 1

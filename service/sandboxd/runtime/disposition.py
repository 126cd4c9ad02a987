"""The one place that decides ack, nak or term for a delivery.

- done: the effect is durable (desired state written, reconcile applied and status written) → ack;
- stale: an older event the desired state already supersedes → ack;
- retry: a transient failure → nak with a growing delay, unless this was the last allowed delivery, in which
  case it is dead-lettered and terminated like a permanent failure;
- rejected / failed: a permanent failure → dead-letter (durable) first, then term;
- hand back: shutting down before the work started → nak without delay so another replica takes it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable

from sandboxd.errors import SandboxdError
from sandboxd.reconcile.ports import DeadLetters, Delivery
from sandboxd.runtime.retry import Backoff
from sandboxd.telemetry.metrics import Instruments, noop_instruments

log = logging.getLogger(__name__)


class Disposition:
    def __init__(
        self, *, dead_letters: DeadLetters, backoff: Backoff, max_deliver: int, metrics: Instruments | None = None
    ) -> None:
        self._dead_letters = dead_letters
        self._backoff = backoff
        self._max_deliver = max_deliver
        self._metrics = metrics or noop_instruments()
        self.counts: dict[str, int] = {"ack": 0, "nak": 0, "term": 0, "dead_letter": 0}
        if metrics is not None:
            metrics.watch_settlements(lambda: self.counts)

    async def done(self, deliveries: Iterable[Delivery]) -> None:
        for delivery in deliveries:
            await self._settle(delivery.ack(), "ack")

    async def stale(self, delivery: Delivery) -> None:
        await self._settle(delivery.ack(), "ack")

    async def retry(self, deliveries: Iterable[Delivery], *, failures: int, error: SandboxdError) -> float:
        """Nak with the per-sandbox backoff; returns the delay used (for triggers that have no delivery).

        A redelivered event remembers how often it failed (``num_delivered``) even when the queue forgot the
        sandbox in between, so the delay keeps growing across redeliveries.
        """
        deliveries = list(deliveries)
        failures = max([failures, *(d.num_delivered for d in deliveries)])
        delay = self._backoff.delay(failures, hint=getattr(error, "delay", None))
        self._metrics.retried(error.reason)
        for delivery in deliveries:
            if delivery.num_delivered >= self._max_deliver - 1:
                await self.reject(delivery, error, note=f"gave up after {delivery.num_delivered} deliveries")
                continue
            await self._settle(delivery.nak(delay), "nak")
        return delay

    async def reject(self, delivery: Delivery, error: SandboxdError, *, note: str = "") -> None:
        message = f"{error.message} ({note})" if note else error.message
        await self._dead_letters.send(delivery, reason=error.reason, message=message)
        self.counts["dead_letter"] += 1
        self._metrics.dead_lettered(error.reason)
        await self._settle(delivery.term(), "term")

    async def hand_back(self, deliveries: Iterable[Delivery]) -> None:
        for delivery in deliveries:
            await self._settle(delivery.nak(), "nak")

    async def _settle(self, action: Awaitable[None], kind: str) -> None:
        try:
            await action
        except Exception as exc:  # noqa: BLE001 - a lost ack only means a redelivery, which is idempotent
            log.warning("could not %s a delivery: %s", kind, exc.__class__.__name__)
            return
        self.counts[kind] += 1

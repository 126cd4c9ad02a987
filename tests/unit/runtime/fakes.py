"""In-memory deliveries and dead letters for the runtime's unit tests: they record how they were settled."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass
class FakeDelivery:
    subject: str
    data: bytes = b"{}"
    stream_sequence: int = 1
    num_delivered: int = 1
    headers: Mapping[str, str] = field(default_factory=dict)
    published_at: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    num_pending: int = 0
    settled: list[tuple[str, float | None]] = field(default_factory=list)
    progress: int = 0  # in_progress calls (the queue's heartbeat)

    async def ack(self) -> None:
        self.settled.append(("ack", None))

    async def nak(self, delay: float | None = None) -> None:
        self.settled.append(("nak", delay))

    async def term(self) -> None:
        self.settled.append(("term", None))

    async def in_progress(self) -> None:
        self.progress += 1


@dataclass
class Letters:
    """Dead letters kept in a list; ``fail`` makes the next sends raise it (the broker refusing)."""

    sent: list[tuple[int, str, str]] = field(default_factory=list)
    fail: BaseException | None = None

    async def send(self, delivery: FakeDelivery, *, reason: str, message: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append((delivery.stream_sequence, reason, message))

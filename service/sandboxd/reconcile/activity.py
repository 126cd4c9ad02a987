"""The activity book: the newest activity report per sandbox, held in memory by each service replica.

The feed (``adapters.jetstream.activity``) fills it from the broker and the prober; the sweeper reads it to
decide idleness (``reconcile.idle``). Mutable, single event loop, no I/O; the decisions stay pure elsewhere.
One report per running sandbox is held, so a kept report shares its field-name set with the others
(``models.sharing``): at 50,000 sandboxes that set alone would be 11 MB.

A reporter's clock is not trusted: a report's ``lastActivityAt`` is capped at the time it was received plus
``CLOCK_SKEW``, and the report received last replaces the one held whatever times they carry, so one report
from the far future (or a pty-server with a skewed clock) cannot keep a sandbox awake for good: the next real
report corrects it.
"""

from __future__ import annotations

from collections.abc import Container
from datetime import datetime, timedelta
from typing import Final

from sandboxd.models.activity import ActivityReport
from sandboxd.models.sharing import Sharing
from sandboxd.naming import SandboxId

#: How far past the time it was received a report's ``lastActivityAt`` may be (clocks differ a little); a later
#: time is cut to it.
CLOCK_SKEW: Final = timedelta(seconds=30)


class ActivityBook:
    """The newest activity report per sandbox, in memory (one per service replica).

    A report received before the one held is ignored; one received at the same time or later replaces it (the
    session count may change without new keystrokes, and a reporter may correct a time it got wrong).
    ``ready`` is false until the feed that fills the book
    has replayed what the broker kept, so nobody decides idleness from a half-filled book after a restart.
    """

    __slots__ = ("_latest", "_received", "_sharing", "ready")

    def __init__(self, *, ready: bool = False) -> None:
        self._latest: dict[SandboxId, ActivityReport] = {}
        self._received: dict[str, datetime] = {}
        self._sharing = Sharing()
        self.ready = ready

    def record(self, sandbox_id: SandboxId, report: ActivityReport, *, received_at: datetime | None = None) -> bool:
        """Keep ``report`` unless one received later is held; returns whether it was kept.

        ``received_at`` is when it reached sandboxd (the stream's timestamp, or the probe's clock); a report
        whose receipt is not known counts as received at its own ``lastActivityAt`` (trusted, not capped).
        """
        received = report.last_activity_at if received_at is None else received_at
        current = self._received.get(sandbox_id)
        if current is not None and received < current:
            return False
        if report.last_activity_at > received + CLOCK_SKEW:
            report = report.model_copy(update={"last_activity_at": received + CLOCK_SKEW})
        self._latest[sandbox_id] = self._sharing.share(report)
        self._received[sandbox_id] = received
        return True

    def latest(self, sandbox_id: SandboxId) -> ActivityReport | None:
        return self._latest.get(sandbox_id)

    def prune(self, *, keep: Container[str], before: datetime) -> int:
        """Forget reports of sandboxes not in ``keep`` whose activity is older than ``before``; how many.

        A report older than a sandbox's own creation never matters (its last accepted event is newer), so
        this only bounds memory against ids that come and go.
        """
        gone = [sid for sid, r in self._latest.items() if r.last_activity_at < before and sid not in keep]
        for sandbox_id in gone:
            del self._latest[sandbox_id]
            self._received.pop(sandbox_id, None)
        return len(gone)

    def __len__(self) -> int:
        return len(self._latest)

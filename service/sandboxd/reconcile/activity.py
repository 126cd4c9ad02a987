"""The activity book: the newest activity report per sandbox, held in memory by each service replica.

The feed (``adapters.jetstream.activity``) fills it from the broker and the prober; the sweeper reads it to
decide idleness (``reconcile.idle``). Mutable, single event loop, no I/O; the decisions stay pure elsewhere.
One report per running sandbox is held, so a kept report shares its field-name set with the others
(``models.sharing``): at 50,000 sandboxes that set alone would be 11 MB.
"""

from __future__ import annotations

from collections.abc import Container
from datetime import datetime

from sandboxd.models.activity import ActivityReport
from sandboxd.models.sharing import Sharing


class ActivityBook:
    """The newest activity report per sandbox, in memory (one per service replica).

    A report older (by ``lastActivityAt``) than the one held is ignored; an equally old one replaces it (the
    session count may change without new keystrokes). ``ready`` is false until the feed that fills the book
    has replayed what the broker kept, so nobody decides idleness from a half-filled book after a restart.
    """

    __slots__ = ("_latest", "_sharing", "ready")

    def __init__(self, *, ready: bool = False) -> None:
        self._latest: dict[str, ActivityReport] = {}
        self._sharing = Sharing()
        self.ready = ready

    def record(self, sandbox_id: str, report: ActivityReport) -> bool:
        """Keep ``report`` unless it is stale; returns whether it was kept."""
        current = self._latest.get(sandbox_id)
        if current is not None and report.last_activity_at < current.last_activity_at:
            return False
        self._latest[sandbox_id] = self._sharing.share(report)
        return True

    def latest(self, sandbox_id: str) -> ActivityReport | None:
        return self._latest.get(sandbox_id)

    def prune(self, *, keep: Container[str], before: datetime) -> int:
        """Forget reports of sandboxes not in ``keep`` whose activity is older than ``before``; how many.

        A report older than a sandbox's own creation never matters (its last accepted event is newer), so
        this only bounds memory against ids that come and go.
        """
        gone = [sid for sid, r in self._latest.items() if r.last_activity_at < before and sid not in keep]
        for sandbox_id in gone:
            del self._latest[sandbox_id]
        return len(gone)

    def __len__(self) -> int:
        return len(self._latest)

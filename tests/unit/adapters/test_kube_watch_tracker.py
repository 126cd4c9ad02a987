"""What a watch feed's tracker kicks: the sandbox its objects are labelled with, once that label is a sandbox id."""

from __future__ import annotations

from typing import Any

from sandboxd.adapters.kubernetes.resources import SANDBOX_LABEL
from sandboxd.adapters.kubernetes.watching import Tracker, feeds
from sandboxd.naming import SandboxId


def labelled(uid: str, sandbox: str) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "labels": {SANDBOX_LABEL: sandbox}}}


def test_a_deletion_kicks_its_sandbox_and_a_label_that_is_no_sandbox_id_kicks_nothing() -> None:
    kicked: list[SandboxId] = []
    deletions = next(feed for feed in feeds() if feed.name.startswith("deletions/"))
    tracker = Tracker(feed=deletions, kick=kicked.append)
    tracker.relist([labelled("u1", "sb-1"), labelled("u2", "Hand_Made"), {"metadata": {"labels": {}}}])
    assert set(tracker.known) == {"u1"}
    tracker.event("DELETED", labelled("u2", "Hand_Made"))
    tracker.event("DELETED", labelled("u1", "sb-1"))
    assert kicked == ["sb-1"]

"""The command outbox shared by the reconcile passes and the sweeper: what it keeps, resends and forgets."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from datetime import UTC, datetime

import pytest

from sandboxd.errors import BrokerUnavailable
from sandboxd.models.activity import ScaleCommand
from sandboxd.runtime.outbox import CommandOutbox
from unit.idle.factories import Commands

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def command(generation: int, action: str = "suspend", sandbox_id: str = "sb-1") -> ScaleCommand:
    return ScaleCommand(
        command_id=f"{sandbox_id}:{generation}:{action}",
        sandbox_id=sandbox_id,
        namespace="sandbox-a-at-acme-com",
        stateful_set="pty-server",
        replicas=0,
        reason="Suspended",
        issued_at=NOW,
        generation=generation,
    )


async def run(sandbox_id: str, step: Awaitable[object]) -> None:
    """The sweeper's guard: a failed publish is logged there, never raised."""
    with contextlib.suppress(BrokerUnavailable):
        await step


async def test_a_failed_publish_is_kept_and_raised_then_resent_while_current() -> None:
    publisher = Commands(failing=True)
    outbox = CommandOutbox(publisher)
    with pytest.raises(BrokerUnavailable):
        await outbox.send(command(2))
    assert (outbox.pending, outbox.failed, outbox.waiting_for()) == (1, 1, {"sb-1"})
    await outbox.resend({"sb-1": 2}, run)  # still failing: kept
    assert outbox.pending == 1 and outbox.failed == 2
    publisher.failing = False
    await outbox.resend({"sb-1": 2}, run)
    assert publisher.ids == ["sb-1:2:suspend"] and outbox.pending == 0


async def test_a_superseded_command_is_dropped_unsent() -> None:
    publisher = Commands(failing=True)
    outbox = CommandOutbox(publisher)
    await run("sb-1", outbox.send(command(2)))
    publisher.failing = False
    await outbox.resend({"sb-1": 3}, run)  # the desired state moved on (an update, a wake)
    assert publisher.ids == [] and outbox.pending == 0


async def test_an_older_command_never_replaces_or_clears_a_newer_one() -> None:
    """A pass and a sweep may publish for one sandbox at once: the newer command is the one kept."""
    publisher = Commands(failing=True)
    outbox = CommandOutbox(publisher)
    await run("sb-1", outbox.send(command(3, "resume")))
    await run("sb-1", outbox.send(command(2)))  # an older command failing late
    assert outbox.waiting_for() == {"sb-1"}
    publisher.failing = False
    await outbox.send(command(2))  # an older command published late
    assert outbox.pending == 1
    await outbox.resend({"sb-1": 3}, run)
    assert publisher.ids == ["sb-1:2:suspend", "sb-1:3:resume"] and outbox.pending == 0


async def test_publishing_a_newer_command_clears_the_older_kept_one() -> None:
    publisher = Commands(failing=True)
    outbox = CommandOutbox(publisher)
    await run("sb-1", outbox.send(command(2)))
    publisher.failing = False
    await outbox.send(command(3, "resume"))
    assert outbox.pending == 0 and publisher.ids == ["sb-1:3:resume"]

"""Process-level resilience: ``sandboxd run`` killed, stopped and doubled while events are in flight.

Each test runs real ``sandboxd run`` processes (directory applier, 3 s ack wait) against a real nats-server and
checks the end state from the outside, the way an operator would: every sandbox's desired state and status at
its last event (status ``observedGeneration`` = the desired generation, phase Provisioning/Ready), the
StatefulSet file on disk at the last replica count, and the shared consumer with nothing pending and nothing
unacknowledged.

- SIGKILL in the middle of reconciling: nothing acked was lost (resync at start-up), nothing unacked was lost
  (redelivered after the ack wait), and events published while no service ran are processed.
- SIGTERM in the middle: the process drains and exits 0 within its grace; a new process finishes the rest.
- Two processes on one consumer with interleaved updates of the same sandboxes end at the last spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import anyio
import nats.errors
import pytest
from nats.aio.msg import Msg
from nats.js.api import ConsumerInfo
from sandboxd_processes import (
    Expectation,
    Services,
    replicas_in_git,
    unconverged,
    wait_converged,
    wait_drained,
    wait_fetching,
    wait_for,
)

from sandboxd import naming
from sandboxd.adapters.natsserver import NatsServer
from support.spine import Client, client, spec, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

GRACE_S = 10.0
Stale = tuple[str | None, int | None, int]  # status event id, replicas in git, replicas wanted


def sandboxes(prefix: str, count: int) -> list[Expectation]:
    return [Expectation(unique_id(prefix), f"{prefix}{n}@acme.com") for n in range(count)]


async def publish(c: Client, want: Expectation, sessions: int) -> int:
    """Publish the next event for ``want`` (create first, then updates) and record what it must end as."""
    verb = "create" if want.events == 0 else "update"
    data = {"spec": spec(want.email, sessions=sessions)}
    sequence = await c.publish(verb, want.sandbox_id, data, event_id=want.next_event_id())
    want.sessions = sessions
    return sequence


async def some_at_last_event(c: Client, wants: list[Expectation]) -> bool:
    for want in wants:
        status = await c.status(want.sandbox_id)
        if status is not None and status.event_id == want.event_id and status.replicas is not None:
            return True
    return False


async def restarted_and_settled(c: Client, services: Services, wants: list[Expectation]) -> ConsumerInfo:
    """Start one more service; wait until every sandbox ends on its last event and the consumer is drained."""
    services.start()
    await wait_converged(c, services.root, wants, timeout=60, logs=services.logs)
    return await wait_drained(c.js, timeout=30)


def no_tracebacks(services: Services) -> None:
    for process in services.started:
        assert "Traceback" not in process.output(), process.output()


async def test_sigkill_mid_reconcile_then_restart_converges(fresh_nats_server: NatsServer, tmp_path: Path) -> None:
    services = Services(fresh_nats_server.url, tmp_path / "rendered", tmp_path, {"SANDBOXD_CONCURRENCY": "1"})
    wants = sandboxes("kill", 30)
    try:
        async with client(fresh_nats_server.url) as c:
            first = services.start()
            await wait_fetching(c.js)
            for want in wants:
                await publish(c, want, sessions=1)
            await wait_for(lambda: some_at_last_event(c, wants), timeout=30, what="the first reconciles")
            for want in wants:
                await publish(c, want, sessions=2)
            await wait_for(lambda: some_at_last_event(c, wants), timeout=30, what="the updates to start")
            first.kill()  # at once: what is not converged now was in flight (the snapshot takes ~60 reads)
            in_flight = await unconverged(c, services.root, wants)
            assert in_flight, "every sandbox converged before the kill; nothing was in flight"

            for want in wants[::2]:  # published while no service runs
                await publish(c, want, sessions=3)
            await restarted_and_settled(c, services, wants)
    finally:
        services.stop_all()
    no_tracebacks(services)


async def test_sigterm_drains_exits_zero_and_loses_nothing(fresh_nats_server: NatsServer, tmp_path: Path) -> None:
    # No catch-up hold: this test needs reconciles running while most events still wait.
    env = {"SANDBOXD_CONCURRENCY": "2", "SANDBOXD_CATCH_UP_HOLD_SECONDS": "0"}
    services = Services(fresh_nats_server.url, tmp_path / "rendered", tmp_path, env)
    wants = sandboxes("term", 150)
    last = 0
    try:
        async with client(fresh_nats_server.url) as c:
            first = services.start(SANDBOXD_SHUTDOWN_GRACE_SECONDS=str(GRACE_S))
            await wait_fetching(c.js)
            for sessions in (1, 2, 3):
                for want in wants:
                    last = await publish(c, want, sessions=sessions)
            await wait_for(lambda: some_at_last_event(c, wants), timeout=30, what="the first reconciles")
            in_flight = await unconverged(c, services.root, wants)
            first.signal(signal.SIGTERM)
            with anyio.fail_after(GRACE_S + 10):
                code = await first.wait(timeout=GRACE_S + 10)
            assert code == 0, first.output()
            assert in_flight, "every sandbox converged before SIGTERM; nothing was in flight"
            assert "SIGTERM: draining" in first.output()

            info = await restarted_and_settled(c, services, wants)
    finally:
        services.stop_all()
    assert info.delivered.stream_seq == last  # every event was delivered ...
    assert info.ack_floor.stream_seq == last  # ... and acknowledged
    no_tracebacks(services)


async def test_two_services_on_one_consumer_converge_on_interleaved_updates(
    fresh_nats_server: NatsServer, tmp_path: Path
) -> None:
    services = Services(fresh_nats_server.url, tmp_path / "rendered", tmp_path, {"SANDBOXD_CONCURRENCY": "4"})
    wants = sandboxes("pair", 10)
    rounds = 8
    try:
        async with client(fresh_nats_server.url) as c, client(fresh_nats_server.url) as other:
            services.start()
            services.start()
            await wait_fetching(c.js, services=2)

            async def publish_half(publisher: Client, half: list[Expectation]) -> None:
                for round_ in range(rounds):
                    for want in half:
                        await publish(publisher, want, sessions=1 + (round_ * 3 + len(want.email)) % 10)
                    await anyio.sleep(0.02)  # let both services take some of every round

            async with anyio.create_task_group() as tg:
                tg.start_soon(publish_half, c, wants[0::2])
                tg.start_soon(publish_half, other, wants[1::2])
            await wait_converged(c, services.root, wants, timeout=60, logs=services.logs)
            await wait_drained(c.js, timeout=30)
    finally:
        services.stop_all()
    no_tracebacks(services)


@pytest.mark.git
async def test_two_services_with_slow_gitops_applies_converge(fresh_nats_server: NatsServer, tmp_path: Path) -> None:
    """Three replicas, a few sandboxes, many updates and ~300 ms GitOps applies make a race likely: an older pass
    in one replica finishing (apply, status) after a newer pass in another. The end state must still be the last
    event's, in the status and in git, without waiting for a resync."""
    repo = tmp_path / "gitops.git"
    env = {"SANDBOXD_CONCURRENCY": "4", "SANDBOXD_APPLIER": "gitops", "SANDBOXD_GITOPS_REPO": str(repo)}
    services = Services(fresh_nats_server.url, tmp_path / "rendered", tmp_path, env)
    wants = sandboxes("git", 4)
    try:
        async with client(fresh_nats_server.url) as c:
            for _ in range(3):
                services.start()
            await wait_fetching(c.js, services=3)
            for round_ in range(15):
                for want in wants:
                    await publish(c, want, sessions=1 + round_ % 10)
                await anyio.sleep(0.05)
            await wait_drained(c.js, timeout=120)
            with anyio.move_on_after(20):
                while await _stale_in_git(c, repo, wants):
                    await anyio.sleep(0.5)
            stale = await _stale_in_git(c, repo, wants)
    finally:
        services.stop_all()
    assert not stale, f"left at an older event (status event, git replicas, wanted): {stale}"
    no_tracebacks(services)


async def _stale_in_git(
    c: Client, repo: Path, wants: list[Expectation]
) -> dict[str, tuple[str | None, int | None, int]]:
    stale = {}
    for want in wants:
        status = await c.status(want.sandbox_id)
        replicas = replicas_in_git(repo, want.owner_uid)
        if status is None or status.event_id != want.event_id or replicas != want.sessions:
            stale[want.sandbox_id] = (status.event_id if status else None, replicas, want.sessions)
    return stale


async def test_sigterm_hands_back_what_it_held_at_once(fresh_nats_server: NatsServer, tmp_path: Path) -> None:
    """What a stopping service held but did not finish is nak'd at once: the next fetch gets it, no ack wait.

    A nak'd delivery stays in the consumer's ``num_ack_pending`` until it is delivered again (nats-server keeps
    it pending and queues it for redelivery), so the check is a fetch: with a 120 s ack wait only a hand-back
    that reached the server makes the held events come back within seconds.
    """
    env = {"SANDBOXD_CONCURRENCY": "1", "SANDBOXD_CATCH_UP_HOLD_SECONDS": "0", "SANDBOXD_ACK_WAIT_SECONDS": "120"}
    services = Services(fresh_nats_server.url, tmp_path / "rendered", tmp_path, env)
    wants = sandboxes("back", 200)
    try:
        async with client(fresh_nats_server.url) as c:
            first = services.start(SANDBOXD_SHUTDOWN_GRACE_SECONDS=str(GRACE_S))
            await wait_fetching(c.js)
            for want in wants:
                await publish(c, want, sessions=1)
            await wait_for(lambda: some_at_last_event(c, wants), timeout=30, what="the first reconciles")
            first.signal(signal.SIGTERM)
            assert await first.wait(timeout=GRACE_S + 10) == 0, first.output()
            held = await c.js.consumer_info(naming.EVENTS_STREAM, naming.EVENTS_CONSUMER)
            assert held.num_ack_pending > 0, "nothing was held at SIGTERM"

            durable = await c.js.pull_subscribe_bind(naming.EVENTS_CONSUMER, stream=naming.EVENTS_STREAM)
            back: list[Msg] = []
            with anyio.move_on_after(10):
                while len(back) < held.num_ack_pending:
                    with contextlib.suppress(nats.errors.TimeoutError, asyncio.TimeoutError):
                        back += await durable.fetch(held.num_ack_pending - len(back), timeout=1)
            redelivered = [m for m in back if m.metadata.num_delivered > 1]
            assert len(redelivered) == held.num_ack_pending, f"{len(redelivered)} of {held.num_ack_pending} came back"
            for msg in back:
                await msg.nak()
            await durable.unsubscribe()

            await restarted_and_settled(c, services, wants)
    finally:
        services.stop_all()
    no_tracebacks(services)

"""The idle lifecycle inside the real service on a real nats-server, on injected time.

Events go in as any publisher sends them, activity as pty-server's reports on ``sandbox.activity.<id>``; the
tests read the status projection, the commands in SANDBOX_SCALE and the replica counts the reconciles applied.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from aiohttp import web

from sandboxd import naming
from sandboxd.adapters.memory import MemoryApplier
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.models.status import ConditionType, Phase
from support.spine import client, running_service, service_settings, spec, unique_id

from .rig import IDLE_ENV, FrozenClock, commands_become, idle_of, minutes, report, scale_commands, seen, until

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


@pytest.fixture(autouse=True)
def idle_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in IDLE_ENV.items():
        monkeypatch.setenv(name, value)
    yield


async def test_idle_after_the_timeout_and_woken_by_activity(fresh_nats_server: NatsServer) -> None:
    applier, clock, sid = MemoryApplier(), FrozenClock(), unique_id()
    settings = service_settings(fresh_nats_server.url)
    async with client(fresh_nats_server.url) as c, running_service(settings, applier, clock=clock) as service:
        idle = await idle_of(service)
        await c.create(sid, "idle@acme.com", sessions=3)
        await c.wait_status(sid, lambda s: s.phase is Phase.READY)
        await seen(idle, sid)
        await report(c.js, idle, sid, minutes(1))

        await idle.sweeper.sweep_once(minutes(30))  # 29 minutes since the last activity: not yet
        assert await scale_commands(c.js, sid) == []

        clock.now = minutes(31)
        await idle.sweeper.sweep_once(minutes(31))
        status = await c.wait_status(sid, lambda s: s.phase is Phase.IDLE)
        assert status.idle_since == minutes(31) and status.last_activity_at == minutes(1)
        assert status.idle_reason is not None and "no session and no activity since" in status.idle_reason
        assert status.replicas is not None and status.replicas.desired == 0
        idle_condition = status.condition(ConditionType.IDLE)
        assert idle_condition is not None and idle_condition.status == "True"
        assert applier.applied[sid].replicas == 0
        [command] = await scale_commands(c.js, sid)
        assert (command.command_id, command.replicas, command.reason) == (f"{sid}:2:idle", 0, "Idle")
        assert command.namespace == "sandbox-idle-at-acme-com" and command.stateful_set == "pty-server"

        await idle.sweeper.sweep_once(minutes(90))  # idle stays idle: no second command, no flapping
        assert len(await scale_commands(c.js, sid)) == 1

        await report(c.js, idle, sid, minutes(95))
        clock.now = minutes(96)
        await idle.sweeper.sweep_once(minutes(96))
        status = await c.wait_status(sid, lambda s: s.phase is Phase.READY and s.observed_generation == 3)
        assert status.idle_since is None and status.idle_reason is None
        assert status.last_activity_at == minutes(95)
        assert applier.applied[sid].replicas == 3
        commands = await scale_commands(c.js, sid)
        assert [(x.command_id, x.replicas, x.reason) for x in commands][-1] == (f"{sid}:3:wake", 3, "Active")


async def test_sessions_timeouts_and_opt_out(fresh_nats_server: NatsServer) -> None:
    applier, clock = MemoryApplier(), FrozenClock()
    busy, short, long, out = (unique_id(p) for p in ("busy", "short", "long", "out"))
    settings = service_settings(fresh_nats_server.url)
    async with client(fresh_nats_server.url) as c, running_service(settings, applier, clock=clock) as service:
        idle = await idle_of(service)
        await c.create(busy, "busy@acme.com")
        await c.create(short, "short@acme.com", idleScaling={"timeoutMinutes": 5})
        await c.create(long, "long@acme.com", idleScaling={"timeoutMinutes": 120})
        await c.create(out, "out@acme.com", idleScaling={"enabled": False})
        for sid in (busy, short, long, out):
            await c.wait_status(sid, lambda s: s.phase is Phase.READY)
            await seen(idle, sid)
        await report(c.js, idle, busy, minutes(0), sessions=2)

        await idle.sweeper.sweep_once(minutes(6))  # the sandbox's own 5 minutes beat the default 30
        await c.wait_status(short, lambda s: s.phase is Phase.IDLE)
        await idle.sweeper.sweep_once(minutes(119))
        await idle.sweeper.sweep_once(minutes(60 * 24 * 7))  # a week: busy has a session, out opted out
        await c.wait_status(long, lambda s: s.phase is Phase.IDLE)
        assert {x.sandbox_id for x in await scale_commands(c.js)} == {short, long}
        for sid in (busy, out):
            status = await c.status(sid)
            assert status is not None and status.phase is Phase.READY and status.idle_since is None
        assert applier.applied[busy].replicas == 2 and applier.applied[out].replicas == 2


async def test_resume_wakes_and_suspend_holds_whatever_the_activity(fresh_nats_server: NatsServer) -> None:
    applier, clock, sid = MemoryApplier(), FrozenClock(), unique_id()
    settings = service_settings(fresh_nats_server.url)
    async with client(fresh_nats_server.url) as c, running_service(settings, applier, clock=clock) as service:
        idle = await idle_of(service)
        await c.create(sid, "hold@acme.com", sessions=2)
        await c.wait_status(sid, lambda s: s.phase is Phase.READY)
        await seen(idle, sid)
        await idle.sweeper.sweep_once(minutes(40))
        await c.wait_status(sid, lambda s: s.phase is Phase.IDLE)

        clock.now = minutes(50)
        await c.publish("resume", sid)  # wakes an idle sandbox at once
        status = await c.wait_status(sid, lambda s: s.phase is Phase.READY and s.idle_since is None)
        assert applier.applied[sid].replicas == 2
        await seen(idle, sid, generation=status.observed_generation)
        await idle.sweeper.sweep_once(minutes(51))
        await commands_become(c.js, sid, [f"{sid}:2:idle", f"{sid}:3:resume"])
        assert (await c.wait_status(sid, lambda s: s.idle_reason is None)).phase is Phase.READY
        await idle.sweeper.sweep_once(minutes(79))  # the resume counts as activity: 29 minutes later, awake
        assert len(await scale_commands(c.js, sid)) == 2

        clock.now = minutes(80)
        await c.publish("suspend", sid)
        await c.wait_status(sid, lambda s: s.phase is Phase.SUSPENDED)
        assert applier.applied[sid].replicas == 0
        await seen(idle, sid, generation=4)
        await idle.sweeper.sweep_once(minutes(81))
        assert (await c.wait_status(sid, lambda s: s.idle_reason == "Suspended")).phase is Phase.SUSPENDED
        await report(c.js, idle, sid, minutes(85), sessions=3)  # activity does not wake a suspended sandbox
        await idle.sweeper.sweep_once(minutes(86))
        await idle.sweeper.sweep_once(minutes(60 * 24))
        status = await c.status(sid)
        assert status is not None and status.phase is Phase.SUSPENDED and applier.applied[sid].replicas == 0
        commands = await commands_become(c.js, sid, [f"{sid}:2:idle", f"{sid}:3:resume", f"{sid}:4:suspend"])
        assert [(x.command_id, x.replicas) for x in commands][2:] == [(f"{sid}:4:suspend", 0)]

        clock.now = minutes(60 * 24 + 1)
        await c.publish("resume", sid)
        await c.wait_status(sid, lambda s: s.phase is Phase.READY)
        assert applier.applied[sid].replicas == 2
        await seen(idle, sid, generation=5)
        await idle.sweeper.sweep_once(minutes(60 * 24 + 2))
        commands = await commands_become(c.js, sid, [*(x.command_id for x in commands), f"{sid}:5:resume"])
        assert commands[-1].command_id == f"{sid}:5:resume"


async def test_the_pass_that_applies_a_suspend_or_resume_sends_its_command_once(fresh_nats_server: NatsServer) -> None:
    """No sweep runs here (the first one is over, the next an hour away): each command comes from the pass that
    applied its event; a repeated suspend and a restarted replica's start-up resync send nothing more."""
    applier, clock, sid = MemoryApplier(), FrozenClock(), unique_id()
    settings = service_settings(fresh_nats_server.url)
    async with client(fresh_nats_server.url) as c:
        async with running_service(settings, applier, clock=clock) as service:
            sweeps = (await idle_of(service)).sweeper.stats.sweeps
            await c.create(sid, "pass@acme.com", sessions=2)
            await c.wait_status(sid, lambda s: s.phase is Phase.READY)
            clock.now = minutes(5)
            await c.publish("suspend", sid)
            status = await c.wait_status(sid, lambda s: s.phase is Phase.SUSPENDED)
            assert status.idle_reason == "Suspended" and applier.applied[sid].replicas == 0
            [suspend] = await commands_become(c.js, sid, [f"{sid}:2:suspend"])
            assert (suspend.replicas, suspend.reason, suspend.namespace) == (0, "Suspended", "sandbox-pass-at-acme-com")
            await c.publish("suspend", sid)  # again: accepted, the workload unchanged
            await c.wait_status(sid, lambda s: s.observed_generation == 3)
            await c.publish("resume", sid)
            status = await c.wait_status(sid, lambda s: s.phase is Phase.READY and s.observed_generation == 4)
            assert status.idle_reason is None
            # in stream order: had the repeated suspend's pass sent anything, it would stand before the resume
            [_, resume] = await commands_become(c.js, sid, [f"{sid}:2:suspend", f"{sid}:4:resume"])
            assert (resume.replicas, resume.reason) == (2, "Resumed")
            assert service.idle is not None and service.idle.sweeper.stats.sweeps == sweeps
        attempts = status.attempts
        async with running_service(settings, applier, clock=clock):
            await c.wait_status(sid, lambda s: s.attempts > attempts)  # its start-up resync reconciled it
            await c.publish("suspend", sid)
            await c.wait_status(sid, lambda s: s.phase is Phase.SUSPENDED)
            await commands_become(c.js, sid, [f"{sid}:2:suspend", f"{sid}:4:resume", f"{sid}:5:suspend"])


async def test_an_update_while_idle_keeps_it_idle(fresh_nats_server: NatsServer) -> None:
    applier, clock, sid = MemoryApplier(), FrozenClock(), unique_id()
    settings = service_settings(fresh_nats_server.url)
    async with client(fresh_nats_server.url) as c, running_service(settings, applier, clock=clock) as service:
        idle = await idle_of(service)
        await c.create(sid, "update@acme.com", sessions=2)
        await c.wait_status(sid, lambda s: s.phase is Phase.READY)
        await seen(idle, sid)
        await idle.sweeper.sweep_once(minutes(31))
        await c.wait_status(sid, lambda s: s.phase is Phase.IDLE)
        await c.publish("update", sid, {"spec": spec("update@acme.com", sessions=4)})
        status = await c.wait_status(sid, lambda s: s.observed_generation == 3)
        assert status.phase is Phase.IDLE and applier.applied[sid].replicas == 0
        await seen(idle, sid, generation=3)
        await idle.sweeper.sweep_once(minutes(32))
        assert len(await scale_commands(c.js, sid)) == 1  # an update is not a wake


@pytest.fixture
async def pty_servers() -> AsyncIterator[str]:
    """Stand-ins for each sandbox's pty-server ``/idle``: ``sandbox-alive-…`` answers, the rest fail."""

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.match_info["namespace"].startswith("sandbox-alive"):
            return web.json_response({"lastActivityAt": minutes(20).isoformat(), "activeSessions": 1})
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/{namespace}/idle", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/{{namespace}}/idle"
    finally:
        await runner.cleanup()


async def test_probed_activity_counts_and_a_failed_probe_does_not(
    fresh_nats_server: NatsServer, pty_servers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOXD_IDLE_PROBE", "true")
    monkeypatch.setenv("SANDBOXD_IDLE_PROBE_URL", pty_servers)
    applier, clock = MemoryApplier(), FrozenClock()
    alive, dead = unique_id("alive"), unique_id("dead")
    settings = service_settings(fresh_nats_server.url)
    async with client(fresh_nats_server.url) as c, running_service(settings, applier, clock=clock) as service:
        idle = await idle_of(service)
        await c.create(alive, "alive@acme.com")
        await c.create(dead, "dead@acme.com")
        for sid in (alive, dead):
            await c.wait_status(sid, lambda s: s.phase is Phase.READY)
            await seen(idle, sid)
        assert idle.probing is not None and await idle.probing.probe_once() == 1
        assert idle.activity.book.latest(dead) is None
        stored = await c.js.get_last_msg("SANDBOX_ACTIVITY", f"sandbox.activity.{alive}")
        assert stored.data is not None and b'"activeSessions":1' in stored.data  # shared with other replicas
        await idle.sweeper.sweep_once(minutes(29))
        assert await scale_commands(c.js) == []
        await idle.sweeper.sweep_once(minutes(30))  # the unreachable one idles on time, the busy one does not
        assert [x.sandbox_id for x in await scale_commands(c.js)] == [dead]
        status = await c.wait_status(alive, lambda s: s.last_activity_at is not None)
        assert status.last_activity_at == minutes(20)


async def test_a_restarted_service_remembers_activity(fresh_nats_server: NatsServer) -> None:
    """The activity stream keeps the newest report per sandbox: a new replica replays it before it sweeps."""
    applier, clock, sid = MemoryApplier(), FrozenClock(), unique_id()
    settings = service_settings(fresh_nats_server.url)
    async with client(fresh_nats_server.url) as c:
        async with running_service(settings, applier, clock=clock) as service:
            idle = await idle_of(service)
            await c.create(sid, "restart@acme.com")
            await c.wait_status(sid, lambda s: s.phase is Phase.READY)
            await report(c.js, idle, sid, minutes(25))
            await report(c.js, None, sid, minutes(24))  # received last: the reporter's word, the book keeps 24
            await report(c.js, idle, unique_id(), minutes(0))  # reports arrive in order: once this is in, so is that
            kept = idle.activity.book.latest(sid)
            assert kept is not None and kept.last_activity_at == minutes(24)
        async with running_service(settings, applier, clock=clock) as service:
            idle = await idle_of(service)
            with anyio.fail_after(5):
                await seen(idle, sid)
            # the stream keeps the newest message per subject: the book holds 24 again
            latest = idle.activity.book.latest(sid)
            assert latest is not None and latest.last_activity_at == minutes(24)
            await idle.sweeper.sweep_once(minutes(50))
            assert await scale_commands(c.js, sid) == []
            await idle.sweeper.sweep_once(minutes(54))
            assert len(await scale_commands(c.js, sid)) == 1


async def test_a_far_future_report_cannot_keep_a_sandbox_awake(fresh_nats_server: NatsServer) -> None:
    """A report from the year 9999 (or a pty-server whose clock runs ahead) counts as no later than its receipt
    plus the skew allowance, and the next report replaces it: the sandbox still goes idle."""
    applier, clock, sid = MemoryApplier(), FrozenClock(), unique_id()
    settings = service_settings(fresh_nats_server.url)
    async with client(fresh_nats_server.url) as c, running_service(settings, applier, clock=clock) as service:
        idle = await idle_of(service)
        await c.create(sid, "future@acme.com")
        await c.wait_status(sid, lambda s: s.phase is Phase.READY)
        await seen(idle, sid)
        future = b'{"lastActivityAt":"9999-12-31T23:59:59Z","activeSessions":2}'
        await c.js.publish(naming.activity_subject(sid), future)
        await until(lambda: idle.activity.book.latest(sid) is not None, what="the far-future report")
        held = idle.activity.book.latest(sid)
        assert held is not None and held.last_activity_at < datetime.now(UTC) + timedelta(minutes=5)
        await idle.sweeper.sweep_once(minutes(2))
        status = await c.wait_status(sid, lambda s: s.last_activity_at is not None)
        assert status.last_activity_at == held.last_activity_at  # capped, not the year 9999

        await report(c.js, idle, sid, minutes(1))  # the real reporter corrects it
        clock.now = minutes(31)
        await idle.sweeper.sweep_once(minutes(31))
        status = await c.wait_status(sid, lambda s: s.phase is Phase.IDLE)
        assert status.last_activity_at == minutes(1)
        assert [x.reason for x in await scale_commands(c.js, sid)] == ["Idle"]

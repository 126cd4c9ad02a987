"""Helpers for the idle-lifecycle tests on a real nats-server (and, for the scaler, a real kube-apiserver).

Time is injected: the service runs on a ``FrozenClock`` the test moves, its sweeper loop sweeps once at start
and then not for an hour (``SANDBOXD_IDLE_SWEEP_SECONDS``), and each test sweeps explicitly with
``sweep_once(now)``. Nothing sleeps through a timeout; the helpers only poll for what a real server reports.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from sandboxd import naming
from sandboxd.app.idle import IdleLifecycle
from sandboxd.app.scaler import ScalerConfig, ScalerProcess
from sandboxd.app.service import Service
from sandboxd.models.activity import ActivityReport, ScaleCommand
from sandboxd.models.desired import DesiredState
from sandboxd.settings import ApplierSettings, NatsSettings, TopologySettings, WorkerSettings
from sandboxd.settings.idle import ScalerSettings

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
IDLE_ENV = {"SANDBOXD_IDLE_SWEEP_SECONDS": "3600", "SANDBOXD_IDLE_PROBE": "false"}


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


@dataclass
class FrozenClock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


async def until(condition: Callable[[], Any], *, timeout: float = 15.0, what: str = "condition") -> None:
    """Poll ``condition`` (sync or async) until it is true."""
    with anyio.move_on_after(timeout):
        while True:
            result = condition()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return
            await anyio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def idle_of(service: Service) -> IdleLifecycle:
    """The service's idle lifecycle once its feeds replayed and its first (automatic) sweep ran."""
    await until(lambda: getattr(service, "idle", None) is not None, what="the idle lifecycle")
    idle: IdleLifecycle = service.idle
    await until(lambda: idle.sweeper.stats.sweeps >= 1, what="the first sweep")
    return idle


async def seen(idle: IdleLifecycle, sandbox_id: str, *, generation: int | None = None) -> DesiredState:
    """Wait until the sweeper's view holds ``sandbox_id`` (at ``generation`` or later)."""

    def current() -> DesiredState | None:
        for record in idle.desired.snapshot():
            if record.value.sandbox_id == sandbox_id:
                return record.value
        return None

    def ok() -> bool:
        state = current()
        return state is not None and (generation is None or state.generation >= generation)

    await until(ok, what=f"{sandbox_id} in the sweeper's view")
    state = current()
    assert state is not None
    return state


async def report(
    js: JetStreamContext, idle: IdleLifecycle | None, sandbox_id: str, at: datetime, sessions: int = 0
) -> ActivityReport:
    """Publish an activity report as pty-server (or a gateway) would; wait until ``idle`` has it, if given."""
    body = ActivityReport(last_activity_at=at, active_sessions=sessions)
    await js.publish(naming.activity_subject(sandbox_id), body.to_json())
    if idle is not None:
        await until(lambda: idle.activity.book.latest(sandbox_id) == body, what=f"the report of {sandbox_id}")
    return body


async def scale_commands(js: JetStreamContext, sandbox_id: str | None = None) -> list[ScaleCommand]:
    """Every command still in SANDBOX_SCALE (the scaler removes what it acks), oldest first."""
    info = await js.stream_info(naming.SCALE_STREAM)
    out: list[ScaleCommand] = []
    if not info.state.messages:
        return out
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(naming.SCALE_STREAM, seq)
        except NotFoundError:
            continue
        assert msg.data is not None
        command = ScaleCommand.model_validate(json.loads(msg.data))
        if sandbox_id is None or command.sandbox_id == sandbox_id:
            out.append(command)
    return out


async def commands_become(js: JetStreamContext, sandbox_id: str, ids: list[str]) -> list[ScaleCommand]:
    """Wait until SANDBOX_SCALE holds exactly the commands ``ids`` of ``sandbox_id``, in order (a reconcile pass
    publishes a suspend or resume command just after its status write, so a test that saw the status waits)."""
    found: list[ScaleCommand] = []

    async def match() -> bool:
        found[:] = await scale_commands(js, sandbox_id)
        return [x.command_id for x in found] == ids

    try:
        await until(match, what=f"the scale commands {ids}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; found {[x.command_id for x in found]}") from None
    return found


def scaler_config(nats_url: str, kubeconfig: str) -> ScalerConfig:
    return ScalerConfig(
        nats=NatsSettings(url=nats_url, name="sandboxd-scaler-test"),
        topology=TopologySettings(ack_wait_s=5.0, max_deliver=6),
        worker=WorkerSettings(retry_base_s=0.2, retry_cap_s=1.0),
        applier=ApplierSettings(kind="kubernetes", kubeconfig=kubeconfig),
        scaler=ScalerSettings(metrics_host="127.0.0.1", metrics_port=0, fetch_timeout_s=0.3),  # a free port
    )


@asynccontextmanager
async def running_scaler(config: ScalerConfig) -> AsyncIterator[ScalerProcess]:
    scaler = ScalerProcess(config)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(scaler.run, stop)
        await until(lambda: scaler.worker is not None, what="the scaler to bind its consumer")
        try:
            yield scaler
        finally:
            stop.set()

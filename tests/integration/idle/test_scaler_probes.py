"""The scaler's /healthz, /readyz and /metrics on a real nats-server, with a fake scale target.

What must hold: the endpoint answers from before the connect (503, naming what is missing) to after the drain;
NATS and the Kubernetes API server may come up after the scaler (it waits, /readyz naming which and why);
/readyz is 200 only while NATS is connected, the consumer bound and the target connected, and 503 again while a
stop drains the batch in hand; /metrics serves the default registry, where the upstream counters live; after
``run`` returns nothing listens on the port.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import anyio
import pytest

from sandboxd import naming
from sandboxd.adapters.jetstream.publishing import publish_scale
from sandboxd.adapters.jetstream.stores import KvStore
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.app.scaler import ScalerConfig, ScalerProcess
from sandboxd.models.desired import DesiredState
from sandboxd.reconcile import idle, scaling
from sandboxd.reconcile.idle import Action, Decision
from sandboxd.render.components import PTY_SERVER
from sandboxd.settings import TopologySettings
from sandboxd.telemetry.testing import prometheus_sample
from support.spine import client, unique_id
from unit.idle.factories import T0, FakeStatefulSets, desired

from .rig import scaler_config, until

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def config(nats_url: str) -> ScalerConfig:
    return scaler_config(nats_url, kubeconfig="unused: the target is injected")


async def started(scaler: ScalerProcess) -> int:
    """The port of the scaler's endpoint, once it listens."""
    await until(lambda: scaler.endpoint is not None, what="the scaler's endpoint")
    assert scaler.endpoint is not None
    return scaler.endpoint.port


@pytest.fixture
async def nats_url(fresh_nats_server: NatsServer) -> AsyncIterator[str]:
    """A server with the topology the reconciler provisions (the scaler only binds to it)."""
    async with client(fresh_nats_server.url) as c:
        await ensure_topology(c.js, TopologySettings(ack_wait_s=5.0, max_deliver=6))
    yield fresh_nats_server.url


async def test_readyz_is_503_while_nats_is_still_being_reached() -> None:
    # Nothing listens on the NATS port: the connect keeps retrying while the probes already answer.
    scaler = ScalerProcess(config(f"nats://127.0.0.1:{unused_port()}"), target=FakeStatefulSets())
    async with anyio.create_task_group() as tg:
        tg.start_soon(scaler.run, anyio.Event())
        port = await started(scaler)
        assert (await get(port, "/healthz"))[0] == 200
        await until(lambda: "nats" in scaler.health.details, what="the failed connect")
        status, body = await get(port, "/readyz")
        assert status == 503
        problems = json.loads(body)["notReady"]
        assert problems["consumer"] == "not bound"
        assert problems["nats"].startswith("cannot connect to NATS at nats://127.0.0.1:")
        assert problems["nats"].endswith("connection refused; is the server running, and is the URL right?")
        tg.cancel_scope.cancel()


async def test_a_scaler_started_before_nats_becomes_ready_once_the_server_is_up(tmp_path: Path) -> None:
    server = NatsServer(store_dir=tmp_path / "nats", port=unused_port())
    scaler = ScalerProcess(config(server.url), target=FakeStatefulSets())
    async with anyio.create_task_group() as tg:
        tg.start_soon(scaler.run, anyio.Event())
        port = await started(scaler)
        await until(lambda: "nats" in scaler.health.details, what="a failed connect named on /readyz")
        assert (await get(port, "/readyz"))[0] == 503
        with server:
            async with client(server.url) as c:
                await ensure_topology(c.js, TopologySettings(ack_wait_s=5.0, max_deliver=6))
            await until(lambda: scaler.health.ready, timeout=30.0, what="the scaler to become ready")
            assert await get(port, "/readyz") == (200, '{"ready": true}')
            tg.cancel_scope.cancel()


async def test_a_scaler_whose_api_server_does_not_answer_waits_and_says_so(nats_url: str, tmp_path: Path) -> None:
    # A kubeconfig naming a port nothing listens on: the scaler keeps trying, alive, not ready, and never exits.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{unused_port()}"}}],
                "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    scaler = ScalerProcess(scaler_config(nats_url, kubeconfig=str(kubeconfig)))
    async with anyio.create_task_group() as tg:
        tg.start_soon(scaler.run, anyio.Event())
        port = await started(scaler)
        await until(lambda: scaler._starting.failures >= 2, what="the API server retried")
        status, body = await get(port, "/readyz")
        assert status == 503
        problems = json.loads(body)["notReady"]
        assert problems["target"].startswith("GET /version"), problems
        assert "not-a-real-token" not in body
        assert (await get(port, "/healthz"))[0] == 200
        tg.cancel_scope.cancel()


async def test_the_probes_follow_the_scaler_from_bound_to_drained(nats_url: str) -> None:
    sid = unique_id()
    asleep = idle.desired_after(desired(sid, sessions=3), Decision(Action.IDLE, "quiet"), now=T0)
    awake = idle.desired_after(asleep, Decision(Action.WAKE, "active"), now=T0)
    namespace = naming.namespace_for(asleep.owner_uid)
    held, patching, release = False, anyio.Event(), anyio.Event()

    async def hold() -> None:
        if held:
            patching.set()
            await release.wait()

    target = FakeStatefulSets({(namespace, PTY_SERVER): 3}, before_patch=hold)
    scaler, stop = ScalerProcess(config(nats_url), target=target), anyio.Event()
    async with client(nats_url) as c, anyio.create_task_group() as tg:
        desired_store = KvStore(await c.js.key_value(naming.DESIRED_BUCKET), DesiredState)
        revision = await desired_store.put(naming.desired_key(sid), asleep, revision=None)
        tg.start_soon(scaler.run, stop)
        port = await started(scaler)
        await until(lambda: scaler.health.ready, what="the scaler to be ready")
        assert await get(port, "/readyz") == (200, '{"ready": true}')
        assert await get(port, "/healthz") == (200, '{"alive": true}')

        await publish_scale(c.js, scaling.scale_command(asleep, Action.IDLE, now=T0))

        async def scaled_down() -> bool:
            text = (await get(port, "/metrics"))[1]
            return prometheus_sample(text, "sandbox_controller_idle_timeout_events_total", namespace=namespace) == 1

        await until(scaled_down, what="the scale-down counted on /metrics")
        assert target.replicas[(namespace, PTY_SERVER)] == 0

        held = True
        await desired_store.put(naming.desired_key(sid), awake, revision=revision)
        await publish_scale(c.js, scaling.scale_command(awake, Action.WAKE, now=T0))
        await patching.wait()  # a command is in flight: the drain waits for it
        stop.set()
        await until(lambda: scaler.health.draining, what="the scaler to drain")
        status, body = await get(port, "/readyz")
        assert status == 503 and json.loads(body)["notReady"]["draining"] == "shutting down"
        assert (await get(port, "/healthz"))[0] == 200  # alive while it drains
        release.set()
    assert target.replicas[(namespace, PTY_SERVER)] == 3  # the batch in hand finished
    with pytest.raises(aiohttp.ClientConnectionError):  # after run: the endpoint is gone
        await get(port, "/healthz")

"""The whole service (a real nats-server, the Kubernetes applier, a real kube-apiserver), end to end.

Events go in through JetStream as any publisher's would; the status record is read back as a console would. The
applier is wrapped only to count and time its ``apply`` calls.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise

import anyio
import pytest

from sandboxd.adapters.kubernetes import KubernetesApplier, WatchTiming
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.models.status import Phase
from sandboxd.reconcile.ports import ApplyResult
from sandboxd.render.model import RenderedSandbox
from support.kube_fixtures import KubeTarget
from support.spine import client, running_service, runtime_settings, service_settings

from .cluster import Cluster
from .conftest import applier_settings

pytestmark = [pytest.mark.kube, pytest.mark.anyio]


@dataclass
class Attempt:
    started: float
    ended: float = 0.0
    ok: bool = False


@dataclass
class Recorded:
    """The real applier, with every ``apply`` call's start, end and outcome noted."""

    inner: KubernetesApplier
    attempts: list[Attempt] = field(default_factory=list)

    async def apply(self, sandbox: RenderedSandbox, *, generation: int) -> ApplyResult:
        attempt = Attempt(started=time.monotonic())
        self.attempts.append(attempt)
        try:
            result = await self.inner.apply(sandbox, generation=generation)
        finally:
            attempt.ended = time.monotonic()
        attempt.ok = True
        return result

    async def delete(self, sandbox: RenderedSandbox, *, purge: bool) -> None:
        await self.inner.delete(sandbox, purge=purge)

    async def ready_replicas(self, sandbox: RenderedSandbox) -> int | None:
        return await self.inner.ready_replicas(sandbox)

    async def observe(self, kick: Callable[[str], None]) -> None:
        await self.inner.observe(kick)

    async def check_reachable(self) -> None:
        await self.inner.check_reachable()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def recorded(kube_api: KubeTarget, *, request_timeout_s: float = 10.0) -> Recorded:
    inner = await KubernetesApplier.from_settings(
        applier_settings(kube_api, kube_request_timeout_s=request_timeout_s), watch_timing=WatchTiming(timeout_s=30.0)
    )
    return Recorded(inner)


async def watching(applier: Recorded) -> None:
    """Until every feed of the Observer has listed: from then on no change is missed."""
    with anyio.fail_after(15):
        while len(applier.inner.target_watch.lists) < 12:
            await anyio.sleep(0.02)


@contextmanager
def frozen(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """The process stopped (SIGSTOP: it accepts nothing, answers nothing) until the block ends."""
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


def apiserver_process(kube_api: KubeTarget) -> subprocess.Popen[bytes]:
    if kube_api.server is None:
        pytest.skip("an external cluster cannot be stopped by the test")
    # The harness has no public stop/start of kube-apiserver alone; its process list is the only handle.
    return next(proc for name, proc in kube_api.server._procs if name == "kube-apiserver")


async def test_a_refused_object_fails_the_sandbox_after_one_attempt(
    kube_api: KubeTarget, fresh_nats_server: NatsServer, new_id: Callable[[], str]
) -> None:
    settings = service_settings(fresh_nats_server.url)
    settings = dataclasses.replace(settings, runtime=runtime_settings(gateway_section="Not_A_Section"))
    applier = await recorded(kube_api)
    sandbox_id = new_id()

    async with running_service(settings, applier), client(fresh_nats_server.url) as nats:
        await nats.create(sandbox_id, f"{sandbox_id}@acme.test")
        status = await nats.wait_status(sandbox_id, lambda s: s.phase == Phase.FAILED, timeout=30)
        await anyio.sleep(2.0)  # a retry would start within 0.2 s (SANDBOXD_RETRY_BASE_SECONDS)
        dead = await nats.dead_letters()

    assert status.last_error is not None
    assert status.last_error.retryable is False
    assert status.last_error.message.startswith('HTTPRoute.gateway.networking.k8s.io "pty-server" is invalid: ')
    assert "sectionName" in status.last_error.message
    assert len(applier.attempts) == 1
    assert len(dead) == 1


async def test_an_unanswering_api_server_is_retried_with_growing_pauses_until_it_returns(
    kube_api: KubeTarget, fresh_nats_server: NatsServer, new_id: Callable[[], str]
) -> None:
    process = apiserver_process(kube_api)
    applier = await recorded(kube_api, request_timeout_s=1.0)
    settings = service_settings(fresh_nats_server.url, topology={"max_deliver": 100})
    sandbox_id = new_id()

    async with running_service(settings, applier), client(fresh_nats_server.url) as nats:
        with frozen(process):
            await nats.create(sandbox_id, f"{sandbox_id}@acme.test")
            with anyio.fail_after(30):
                while len(applier.attempts) < 6:
                    await anyio.sleep(0.05)
            during = await nats.status(sandbox_id)
        status = await nats.wait_status(sandbox_id, lambda s: s.phase == Phase.PROVISIONING, timeout=30)

    assert during is not None
    assert during.last_error is not None
    assert during.last_error.retryable is True
    assert "Kubernetes API unreachable" in during.last_error.message
    failed = [a for a in applier.attempts if not a.ok]
    assert len(failed) >= 5
    assert applier.attempts[-1].ok
    assert status.last_error is None
    assert status.replicas is not None
    assert (status.replicas.desired, status.replicas.ready) == (2, 0)
    # The runtime's backoff: base 0.2 s doubling to the 2 s cap, jittered into the upper half of each step, so
    # the pauses before the cap is reached never shrink (0.1-0.2, 0.2-0.4, 0.4-0.8, 0.8-1.6 s).
    pauses = [later.started - earlier.ended for earlier, later in pairwise(failed)][:4]
    assert all(b >= a - 0.05 for a, b in pairwise(pauses)), f"pauses shrank: {pauses}"
    assert pauses[-1] > 2 * pauses[0], f"pauses did not grow: {pauses}"


async def test_ready_follows_the_pods_and_a_deleted_object_comes_back(
    kube_api: KubeTarget, fresh_nats_server: NatsServer, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    """No kubelet runs here, so the test plays it: it writes the StatefulSet's status subresource.

    The Observer's watch kicks the sandbox, the reconcile reads two ready replicas, the status says Ready. Then an
    HTTPRoute deleted out of band is kicked too and the reconcile puts it back.
    """
    applier = await recorded(kube_api)
    settings = service_settings(fresh_nats_server.url)
    sandbox_id = new_id()

    async with running_service(settings, applier), client(fresh_nats_server.url) as nats:
        await watching(applier)
        await nats.create(sandbox_id, f"{sandbox_id}@acme.test", sessions=2)
        provisioning = await nats.wait_status(sandbox_id, lambda s: s.phase == Phase.PROVISIONING, timeout=30)
        assert provisioning.namespace is not None
        stateful_set = f"/apis/apps/v1/namespaces/{provisioning.namespace}/statefulsets/pty-server"

        await cluster.merge_patch(
            f"{stateful_set}/status", {"status": {"replicas": 2, "readyReplicas": 2}}, manager="kubelet-stand-in"
        )
        ready = await nats.wait_status(sandbox_id, lambda s: s.phase == Phase.READY, timeout=15)

        route = f"/apis/gateway.networking.k8s.io/v1/namespaces/{provisioning.namespace}/httproutes/pty-server"
        before = len(applier.attempts)
        await cluster.call("DELETE", route)
        with anyio.fail_after(15):
            while await cluster.read(route) is None:
                await anyio.sleep(0.05)

    assert ready.replicas is not None
    assert (ready.replicas.desired, ready.replicas.ready) == (2, 2)
    assert len(applier.attempts) > before

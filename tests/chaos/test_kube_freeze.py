"""(e) The kube-apiserver frozen (SIGSTOP) for 30 s while updates arrive, with the Kubernetes applier.

It proves: the service neither exits nor spins: it converges once the API server is back (every sandbox's status
and StatefulSet at its last event), and its retries during the freeze stay within the backoff's bound (counted
from ``sandboxd_retries_total`` on its ``/metrics``), as do the requests the API server served in that window
(``apiserver_request_total`` on the API server's own ``/metrics``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from integration.cli.sandboxd_processes import Expectation, Services, desired, wait_drained, wait_fetching
from sandboxd.adapters.natsserver import NatsServer, free_port
from support.chaos import Figures, exits_fail_fast, publish_next, reconnecting_client, unexpected_exits, wait_readyz
from support.kube_fixtures import in_ci
from support.kubeapi import KubeAPIServer, KubeHarnessError
from support.spine import Client, unique_id

pytestmark = [pytest.mark.chaos, pytest.mark.anyio, pytest.mark.timeout(900)]

SANDBOXES = 20
FREEZE_S = 30.0
RETRY_BASE_S, RETRY_CAP_S = 0.2, 2.0
#: Retries one sandbox may make in the window: at most one per cap once the backoff is there, plus the steps
#: that lead up to the cap, plus a few for the passes the events of the window kick.
RETRIES_EACH = math.ceil((FREEZE_S + 15) / RETRY_CAP_S) + math.ceil(math.log2(RETRY_CAP_S / RETRY_BASE_S)) + 4


@pytest.fixture
def own_kube_api() -> Iterator[KubeAPIServer]:
    """A kube-apiserver of this test's own: it is frozen, which no shared server may be."""
    try:
        server = KubeAPIServer.start()
    except KubeHarnessError as exc:
        if in_ci():
            raise
        pytest.skip(f"no kube-apiserver: {exc}")
    try:
        yield server
    finally:
        server.stop()


def apiserver_pid(server: KubeAPIServer) -> int:
    return next(proc.pid for name, proc in server._procs if "apiserver" in name)


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def service_metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def apiserver_requests(server: KubeAPIServer) -> float:
    code, body = server.request("GET", "/metrics", timeout=30)
    assert code == 200, body[:200]
    return metric_sum(body.decode(), "apiserver_request_total")


def statefulset_replicas(server: KubeAPIServer, want: Expectation) -> int | None:
    namespace = f"sandbox-{want.owner_uid}"
    code, body = server.request("GET", f"/apis/apps/v1/namespaces/{namespace}/statefulsets/pty-server")
    return int(json.loads(body)["spec"]["replicas"]) if code == 200 else None


async def unconverged(c: Client, server: KubeAPIServer, wants: list[Expectation]) -> list[str]:
    left = []
    for want in wants:
        status, wanted = await c.status(want.sandbox_id), await desired(c, want.sandbox_id)
        done = (
            wanted is not None
            and wanted.event_id == want.event_id
            and status is not None
            and status.event_id == want.event_id
            and status.observed_generation == wanted.generation
            and await anyio.to_thread.run_sync(statefulset_replicas, server, want) == want.sessions
        )
        if not done:
            left.append(want.sandbox_id)
    return left


async def wait_converged(c: Client, server: KubeAPIServer, wants: list[Expectation], *, timeout: float) -> None:
    left: list[str] = []
    with anyio.move_on_after(timeout):
        while left := await unconverged(c, server, wants):
            await anyio.sleep(0.5)
        return
    first = next(want for want in wants if want.sandbox_id == left[0])
    seen = (await c.status(first.sandbox_id), await anyio.to_thread.run_sync(statefulset_replicas, server, first))
    raise AssertionError(f"{len(left)} sandboxes never converged: {left[:5]}; first (status, replicas): {seen}")


async def test_kube_apiserver_frozen_30_s_under_load(
    own_kube_api: KubeAPIServer, fresh_nats_server: NatsServer, tmp_path: Path, figures: Figures
) -> None:
    server = own_kube_api
    port = free_port()
    services = Services(
        fresh_nats_server.url,
        tmp_path / "unused",
        tmp_path,
        {
            "SANDBOXD_APPLIER": "kubernetes",
            "KUBECONFIG": str(server.kubeconfig_path),
            "SANDBOXD_HEALTH_PORT": str(port),
            "SANDBOXD_HEALTH_HOST": "127.0.0.1",
            "SANDBOXD_RETRY_BASE_SECONDS": str(RETRY_BASE_S),
            "SANDBOXD_RETRY_CAP_SECONDS": str(RETRY_CAP_S),
            "SANDBOXD_KUBE_REQUEST_TIMEOUT_SECONDS": "5",
            "SANDBOXD_LOG_LEVEL": "DEBUG",  # the log is all there is to read when it does not converge
        },
    )
    wants = [Expectation(unique_id("kf"), f"kf{n}@acme.com") for n in range(SANDBOXES)]
    nc = await reconnecting_client(fresh_nats_server.url)
    c = Client(nc, nc.jetstream())
    frozen = False
    try:
        services.start()
        await wait_fetching(c.js)
        await wait_readyz(port, 200, timeout=60)
        async with exits_fail_fast(services.started):
            for want in wants:
                await publish_next(c, want, 1, figures=figures)
            await wait_converged(c, server, wants, timeout=180)

            retries_before = metric_sum(service_metrics(port), "sandboxd_retries_total")
            requests_before = await anyio.to_thread.run_sync(apiserver_requests, server)
            pid = apiserver_pid(server)
            os.kill(pid, signal.SIGSTOP)
            frozen, frozen_at = True, time.monotonic()
            for sessions in (2, 3):  # updates while it is frozen: they must wait, retry slowly, then land
                for want in wants:
                    await publish_next(c, want, sessions, figures=figures)
            await anyio.sleep(max(0.0, FREEZE_S - (time.monotonic() - frozen_at)))
            retries_frozen = metric_sum(service_metrics(port), "sandboxd_retries_total") - retries_before
            os.kill(pid, signal.SIGCONT)
            frozen, thawed = False, time.monotonic()
            await wait_converged(c, server, wants, timeout=180)
            figures["converged_after_thaw_s"] = time.monotonic() - thawed
            await wait_drained(c.js, timeout=60)
            retries = metric_sum(service_metrics(port), "sandboxd_retries_total") - retries_before
            requests = await anyio.to_thread.run_sync(apiserver_requests, server) - requests_before
        figures["retries_during_freeze"] = int(retries_frozen)
        figures["retries_until_converged"] = int(retries)
        figures["retry_bound"] = SANDBOXES * RETRIES_EACH
        figures["apiserver_requests_until_converged"] = int(requests)
        assert retries <= SANDBOXES * RETRIES_EACH, f"{retries} retries for {SANDBOXES} sandboxes in the window"
        # Every sandbox needs one apply of its objects (about 12 requests) and its status reads once it is back;
        # a retry storm would show as many times that.
        assert requests <= SANDBOXES * 12 * 6, f"{requests} requests served for {SANDBOXES} sandboxes"
        figures["lost"] = 0
    finally:
        if frozen:
            os.kill(apiserver_pid(server), signal.SIGCONT)
        figures["exits"] = len(unexpected_exits(services.started, killed=set()))
        services.stop_all()
        with anyio.CancelScope(shield=True):
            await nc.close()
    assert figures["exits"] == 0

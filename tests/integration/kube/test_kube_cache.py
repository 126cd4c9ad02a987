"""The applier's watch cache against a real kube-apiserver: what a steady-state pass costs, drift, prune.

The Observer's feeds run (``applier.observe``) as in the service; each test waits until the cache has seen
the applier's own writes, then counts the requests the next pass makes (a transport that counts its calls) and
reads the result back from the server over the test's own connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from sandboxd.adapters.kubernetes import KubernetesApplier
from sandboxd.adapters.kubernetes.inventory import digest
from sandboxd.adapters.kubernetes.resources import CLUSTER_WATCHED, resource_of
from sandboxd.adapters.kubernetes.transport import KubeTransport
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.models.status import Phase
from sandboxd.render.model import RenderedSandbox
from support.kube_fixtures import KubeTarget
from support.spine import client, running_service, service_settings

from .cluster import MANAGER, Cluster, path_of, sandbox
from .conftest import applier_settings

pytestmark = [pytest.mark.kube, pytest.mark.anyio]

STS = "/apis/apps/v1/namespaces/{ns}/statefulsets/pty-server"


class Counting(KubeTransport):
    """The real transport, recording every request it makes ("METHOD path")."""

    def __init__(self, inner: KubeTransport) -> None:
        super().__init__(inner.api, request_timeout_s=inner.request_timeout_s)
        self.calls: list[str] = []

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(f"{method} {path}")
        return await super()._call(method, path, **kwargs)


@asynccontextmanager
async def observing(applier: KubernetesApplier) -> AsyncIterator[Counting]:
    """The applier's feeds running, and its transport counting requests."""
    counting = Counting(applier.transport)
    applier.transport = counting
    async with anyio.create_task_group() as tg:
        tg.start_soon(applier.observe, lambda _sandbox: None)
        with anyio.fail_after(20):
            while not all(applier.inventory.covers(r) for r in CLUSTER_WATCHED):
                await anyio.sleep(0.02)
        yield counting
        tg.cancel_scope.cancel()


async def cached(applier: KubernetesApplier, rendered: RenderedSandbox) -> None:
    """Until the cache shows every watched object of ``rendered`` as last applied."""

    def seen() -> bool:
        for manifest in rendered.manifests:
            if manifest.kind == "Secret":  # never cached: listed per namespace
                continue
            live = applier.inventory.get(resource_of(manifest), manifest.name, manifest.namespace)
            if live is None or live.applied != digest(manifest.body):
                return False
        return True

    with anyio.fail_after(15):
        while not seen():
            await anyio.sleep(0.02)


async def seen_at(applier: KubernetesApplier, rendered: RenderedSandbox, kind: str, version: str) -> None:
    """Until the cache holds ``rendered``'s object of ``kind`` at resourceVersion ``version``."""
    manifest = next(m for m in rendered.manifests if m.kind == kind)
    with anyio.fail_after(15):
        while True:
            live = applier.inventory.get(resource_of(manifest), manifest.name, manifest.namespace)
            if live is not None and live.resource_version == version:
                return
            await anyio.sleep(0.02)


def writes(calls: Sequence[str]) -> list[str]:
    return [call for call in calls if not call.startswith("GET ")]


async def test_a_pass_over_an_unchanged_sandbox_costs_one_request_and_writes_nothing(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    rendered = sandbox(new_id(), sessions=2, repos=["acme/app"])
    async with observing(applier) as counting:
        await applier.apply(rendered, generation=1)
        await cached(applier, rendered)
        versions = await cluster.versions(rendered)
        counting.calls.clear()

        result = await applier.apply(rendered, generation=1)

        assert counting.calls == [f"GET /api/v1/namespaces/{rendered.namespace}/secrets"]
        assert result.changed is False
        assert result.ready_replicas == 0
        assert result.pruned == ()
        assert await cluster.versions(rendered) == versions


async def test_drift_by_another_field_manager_is_corrected_on_the_next_pass(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    """``kubectl scale`` (a merge patch) takes ``spec.replicas`` over: the cached pass applies the object again."""
    rendered = sandbox(new_id(), sessions=2)
    path = STS.format(ns=rendered.namespace)
    async with observing(applier) as counting:
        await applier.apply(rendered, generation=1)
        await cached(applier, rendered)
        scaled = await cluster.merge_patch(path, {"spec": {"replicas": 5}}, manager="kubectl")
        await seen_at(applier, rendered, "StatefulSet", scaled["metadata"]["resourceVersion"])
        counting.calls.clear()

        result = await applier.apply(rendered, generation=1)

        assert writes(counting.calls) == [f"PATCH {path}"]
        assert result.changed is True
        live_sts = await cluster.get(path)
        assert live_sts["spec"]["replicas"] == 2
        owners = {
            e["manager"]
            for e in live_sts["metadata"]["managedFields"]
            if "f:replicas" in e["fieldsV1"].get("f:spec", {})
        }
        assert owners == {MANAGER}


async def test_an_object_changed_by_this_reconciler_elsewhere_is_applied_again(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    """A changed manifest (another digest) is applied even though the cache shows the object as ours."""
    sandbox_id = new_id()
    two = sandbox(sandbox_id, sessions=2)
    async with observing(applier) as counting:
        await applier.apply(two, generation=1)
        await cached(applier, two)
        three = sandbox(sandbox_id, sessions=3)
        counting.calls.clear()

        result = await applier.apply(three, generation=2)

        assert result.changed is True
        assert writes(counting.calls)  # the StatefulSet and the quota at least
        assert (await cluster.get(STS.format(ns=two.namespace)))["spec"]["replicas"] == 3


async def test_objects_no_longer_rendered_are_pruned_from_the_cached_inventory(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    sandbox_id = new_id()
    http = sandbox(sandbox_id, mcp_transport="http")
    companions = [m for m in http.manifests if m.kind in ("Deployment", "Service") and m.name != "pty-server"]
    assert len(companions) == 2
    async with observing(applier) as counting:
        await applier.apply(http, generation=1)
        await cached(applier, http)
        counting.calls.clear()

        result = await applier.apply(sandbox(sandbox_id, mcp_transport="stdio"), generation=2)

        assert sorted((r.kind, r.name) for r in result.pruned) == sorted((m.kind, m.name) for m in companions)
        assert not [call for call in counting.calls if call.startswith("GET ") and "secrets" not in call]
        for manifest in companions:
            assert await cluster.read(path_of(manifest)) is None


async def test_the_service_resync_writes_nothing_until_drift_and_corrects_it_within_one_period(
    kube_api: KubeTarget, fresh_nats_server: NatsServer, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    """A ConfigMap edited by another manager is no event (only deletions and readiness kick): the resync fixes it."""
    resync_s = 2.0
    applier = await KubernetesApplier.from_settings(applier_settings(kube_api, kube_request_timeout_s=10.0))
    counting = Counting(applier.transport)
    applier.transport = counting
    settings = service_settings(fresh_nats_server.url, worker={"resync_interval_s": resync_s})
    sandbox_id = new_id()
    rendered = sandbox(sandbox_id)
    config = next(m for m in rendered.manifests if m.kind == "ConfigMap")
    async with running_service(settings, applier), client(fresh_nats_server.url) as nats:
        await nats.create(sandbox_id, f"{sandbox_id}@acme.test")
        await nats.wait_status(sandbox_id, lambda s: s.phase == Phase.PROVISIONING, timeout=30)
        await cached(applier, rendered)
        counting.calls.clear()
        with anyio.fail_after(30):  # at least two resync passes of this sandbox
            while counting.calls.count(f"GET /api/v1/namespaces/{rendered.namespace}/secrets") < 2:
                await anyio.sleep(0.05)
        assert writes(counting.calls) == []

        await cluster.merge_patch(path_of(config), {"data": {"mcp.json": "{}"}}, manager="kubectl")
        with anyio.fail_after(resync_s * 1.1 + 5.0):  # one period (±10 %) and the pass itself
            while (await cluster.get(path_of(config)))["data"] != config.body["data"]:
                await anyio.sleep(0.05)

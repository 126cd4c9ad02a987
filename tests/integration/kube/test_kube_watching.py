"""The Observer's feeds against a real kube-apiserver: what is kicked, relisting after 410 Gone, surviving failures.

A 410 needs etcd to have compacted past a watch's resourceVersion, which a young test server never does on its
own; ``Interrupted`` stands in for that disconnect: the real transport, except that one watch request waits while
the test changes the cluster unseen, then answers 410 as the API server does (an ``ERROR`` event with
``code: 410``). Everything else, the lists and the other watches included, is the real server.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

import anyio
import pytest

from sandboxd.adapters.kubernetes import KubernetesApplier, WatchTiming
from sandboxd.adapters.kubernetes.transport import KubeTransport
from sandboxd.adapters.kubernetes.watching import Feed, TargetWatch, feeds
from sandboxd.errors import ApplyUnavailable

from .cluster import Cluster, sandbox

pytestmark = [pytest.mark.kube, pytest.mark.anyio]

GONE = {
    "type": "ERROR",
    "object": {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": "too old resource version: 1 (42)",
        "reason": "Expired",
        "code": 410,
    },
}


def feed_named(name: str) -> Feed:
    return next(feed for feed in feeds() if feed.name == name)


class Kicks:
    """The kicks for the test's own sandboxes (other tests' leftovers share the server)."""

    def __init__(self, *ids: str) -> None:
        self.ids = set(ids)
        self.seen: list[str] = []

    def __call__(self, sandbox_id: str) -> None:
        if sandbox_id in self.ids:
            self.seen.append(sandbox_id)

    async def wait(self, count: int, *, timeout: float = 15.0) -> None:
        with anyio.fail_after(timeout):
            while len(self.seen) < count:
                await anyio.sleep(0.02)


class Interrupted:
    """The real transport, but watch request number ``gap_at`` waits for ``resume`` and then answers 410 Gone."""

    def __init__(self, real: KubeTransport, *, gap_at: int = 2) -> None:
        self.real = real
        self.gap_at = gap_at
        self.watches = 0
        self.in_gap = anyio.Event()
        self.resume = anyio.Event()

    async def list(self, collection: str, *, label_selector: str, metadata_only: bool = False) -> dict[str, Any]:
        return await self.real.list(collection, label_selector=label_selector, metadata_only=metadata_only)

    async def watch(self, collection: str, **kw: Any) -> AsyncGenerator[dict[str, Any], None]:
        self.watches += 1
        if self.watches == self.gap_at:
            self.in_gap.set()
            await self.resume.wait()
            yield GONE
            return
        async for event in self.real.watch(collection, **kw):
            yield event


class FlakyLists(Interrupted):
    """The real transport, but the first lists fail: unreachable twice, then a malformed answer (a bug)."""

    def __init__(self, real: KubeTransport) -> None:
        super().__init__(real, gap_at=0)
        self.list_attempts = 0

    async def list(self, collection: str, *, label_selector: str, metadata_only: bool = False) -> dict[str, Any]:
        self.list_attempts += 1
        if self.list_attempts <= 2:
            raise ApplyUnavailable(f"GET {collection}: Kubernetes API unreachable (test)")
        if self.list_attempts == 3:
            raise ValueError("malformed list")
        return await super().list(collection, label_selector=label_selector, metadata_only=metadata_only)


async def test_a_410_relists_and_kicks_what_vanished_unseen(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    rendered = sandbox(new_id())
    await applier.apply(rendered, generation=1)
    config_map = f"/api/v1/namespaces/{rendered.namespace}/configmaps/sandbox-mcp-config"
    transport = Interrupted(applier.transport)
    watch = TargetWatch(transport, timing=WatchTiming(timeout_s=1.0))
    kicks = Kicks(rendered.sandbox_id)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch.follow, feed_named("deletions/configmaps"), kicks)
        with anyio.fail_after(15):
            await transport.in_gap.wait()  # the first watch ran and ended; nobody watches now
        assert kicks.seen == []  # the first list kicks nothing
        await cluster.call("DELETE", config_map)
        transport.resume.set()

        await kicks.wait(1)  # found by comparing the new list with the old one
        assert watch.lists["deletions/configmaps"] == 2

        await applier.apply(rendered, generation=1)  # restored, as the reconcile the kick causes would
        await anyio.sleep(0.5)
        await cluster.call("DELETE", config_map)
        await kicks.wait(2)  # the watch resumed after the relist sees this one live
        tg.cancel_scope.cancel()
    assert kicks.seen == [rendered.sandbox_id] * 2


async def test_failures_never_end_a_feed(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    rendered = sandbox(new_id())
    await applier.apply(rendered, generation=1)
    transport = FlakyLists(applier.transport)
    watch = TargetWatch(transport, timing=WatchTiming(timeout_s=5.0, backoff_base_s=0.01, backoff_cap_s=0.05))
    kicks = Kicks(rendered.sandbox_id)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch.follow, feed_named("deletions/configmaps"), kicks)
        with anyio.fail_after(10):
            while not watch.lists:
                await anyio.sleep(0.02)
        await anyio.sleep(0.3)  # the watch request is open
        await cluster.call("DELETE", f"/api/v1/namespaces/{rendered.namespace}/configmaps/sandbox-mcp-config")
        await kicks.wait(1)
        tg.cancel_scope.cancel()
    assert transport.list_attempts == 4


async def test_observe_kicks_on_readiness_and_deletions(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    """Through ``observe`` (every feed): creating kicks nothing; readiness, replica counts and deletions do."""
    sandbox_id = new_id()
    rendered = sandbox(sandbox_id, sessions=2)
    kicks = Kicks(sandbox_id)
    stateful_set = f"/apis/apps/v1/namespaces/{rendered.namespace}/statefulsets/pty-server"

    async with anyio.create_task_group() as tg:
        tg.start_soon(applier.observe, kicks)
        await anyio.sleep(1.0)  # every feed listed and watching
        await applier.apply(rendered, generation=1)
        await anyio.sleep(1.0)
        assert kicks.seen == []

        await cluster.merge_patch(
            f"{stateful_set}/status", {"status": {"replicas": 2, "readyReplicas": 2}}, manager="kubelet-stand-in"
        )
        await kicks.wait(1)
        await applier.apply(sandbox(sandbox_id, sessions=3), generation=2)
        await kicks.wait(2)
        await cluster.call(
            "DELETE", f"/apis/gateway.networking.k8s.io/v1/namespaces/{rendered.namespace}/httproutes/pty-server"
        )
        await kicks.wait(3)
        await cluster.call("DELETE", stateful_set)
        await kicks.wait(4)
        tg.cancel_scope.cancel()
    assert kicks.seen == [sandbox_id] * 4

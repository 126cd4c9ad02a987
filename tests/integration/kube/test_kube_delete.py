"""``KubernetesApplier.delete`` against a real kube-apiserver: retain keeps the data, purge takes everything.

The harness runs no kube-controller-manager, so a deleted Namespace stays ``Terminating`` and a deleted PVC keeps
its ``kubernetes.io/pvc-protection`` finalizer: a purge is done when the Namespace is gone or terminating with
nothing of the sandbox left that is not itself being deleted (see ``adapters.kubernetes.applier``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sandboxd.adapters.kubernetes import KubernetesApplier
from sandboxd.adapters.kubernetes.resources import NAMESPACED, sandbox_selector
from sandboxd.errors import ApplyRejected, ApplyUnavailable
from sandboxd.render.model import RenderedSandbox

from .cluster import Cluster, path_of, sandbox

pytestmark = [pytest.mark.kube, pytest.mark.anyio]

#: A retained delete keeps the data, not access (``sandboxd.render.retained``).
KEPT = {"Namespace", "ResourceQuota", "PersistentVolumeClaim"}


async def live_objects(cluster: Cluster, rendered: RenderedSandbox) -> list[dict[str, Any]]:
    """Every object of the sandbox in its namespace, by its labels (what a purge must leave nothing of)."""
    found: list[dict[str, Any]] = []
    for resource in NAMESPACED:
        listed = await cluster.call(
            "GET",
            resource.collection(rendered.namespace),
            labelSelector=sandbox_selector(rendered.sandbox_id),
        )
        found += [{"kind": resource.kind, **item} for item in listed["items"]]
    return found


async def test_retain_removes_what_runs_and_every_grant_and_keeps_the_data(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    rendered = sandbox(new_id(), repos=["acme/app"], mcp_transport="http")
    await applier.apply(rendered, generation=1)

    await applier.delete(rendered, purge=False)

    for manifest in rendered.manifests:
        live = await cluster.read(path_of(manifest))
        if manifest.kind in KEPT:
            assert live is not None, f"{manifest.kind} {manifest.name} should be kept"
            assert "deletionTimestamp" not in live["metadata"]
        else:
            assert live is None, f"{manifest.kind} {manifest.name} should be gone"
    assert {m.kind for m in rendered.manifests} - KEPT == {
        "StatefulSet",
        "Deployment",
        "Service",
        "HTTPRoute",
        "NetworkPolicy",
        "Secret",
        "ConfigMap",
        "ServiceAccount",
        "Role",
        "RoleBinding",
    }

    await applier.delete(rendered, purge=False)  # idempotent: nothing left to delete is not an error

    again = await applier.apply(rendered, generation=2)  # a later create finds the data where it left it
    assert again.pruned == ()
    for manifest in rendered.manifests:
        await cluster.get(path_of(manifest))


async def test_a_create_after_a_retained_delete_keeps_the_earlier_volumes(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    sandbox_id = new_id()
    first = sandbox(sandbox_id, repos=["acme/app"])
    await applier.apply(first, generation=1)
    await applier.delete(first, purge=False)

    again = sandbox(sandbox_id, repos=["acme/web"])  # the same owner, created again with another repo
    result = await applier.apply(again, generation=1)

    assert [ref.kind for ref in result.pruned if ref.kind == "PersistentVolumeClaim"] == []
    (old_claim,) = first.by_kind("PersistentVolumeClaim")
    kept = await cluster.get(path_of(old_claim))
    assert "deletionTimestamp" not in kept["metadata"]
    for manifest in again.manifests:  # access and workloads are rendered again
        await cluster.get(path_of(manifest))


async def test_purge_removes_everything_and_the_namespace(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    rendered = sandbox(new_id(), repos=["acme/app", "acme/tools"])
    await applier.apply(rendered, generation=1)

    await applier.delete(rendered, purge=True)

    namespace = await cluster.read(f"/api/v1/namespaces/{rendered.namespace}")
    assert namespace is None or namespace["metadata"].get("deletionTimestamp")
    left = await live_objects(cluster, rendered)
    assert all(item["metadata"].get("deletionTimestamp") for item in left), [
        (item["kind"], item["metadata"]["name"]) for item in left
    ]
    assert {item["kind"] for item in left} <= {"PersistentVolumeClaim"}  # held only by pvc-protection

    await applier.delete(rendered, purge=True)  # idempotent
    await applier.delete(rendered, purge=False)


async def test_a_create_while_the_namespace_terminates_is_retried_later(
    applier: KubernetesApplier, new_id: Callable[[], str]
) -> None:
    """Re-creating a purged sandbox before its namespace is gone meets NamespaceTerminating: retryable, ≥ 5 s."""
    rendered = sandbox(new_id())
    await applier.apply(rendered, generation=1)
    await applier.delete(rendered, purge=True)

    with pytest.raises(ApplyUnavailable) as terminating:
        await applier.apply(rendered, generation=2)

    assert "because it is being terminated" in terminating.value.message
    assert terminating.value.delay is not None
    assert terminating.value.delay >= 5.0


async def test_purge_of_a_sandbox_never_applied_is_a_no_op(
    applier: KubernetesApplier, new_id: Callable[[], str]
) -> None:
    rendered = sandbox(new_id())
    await applier.delete(rendered, purge=True)
    await applier.delete(rendered, purge=False)


async def test_purge_refuses_a_namespace_that_is_not_the_sandboxs(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    rendered = sandbox(new_id())
    foreign = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": rendered.namespace}}
    await cluster.call("POST", "/api/v1/namespaces", foreign)

    with pytest.raises(ApplyRejected, match="not purging it"):
        await applier.delete(rendered, purge=True)

    namespace = await cluster.get(f"/api/v1/namespaces/{rendered.namespace}")
    assert "deletionTimestamp" not in namespace["metadata"]
    await cluster.call("DELETE", f"/api/v1/namespaces/{rendered.namespace}")

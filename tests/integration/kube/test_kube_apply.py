"""``KubernetesApplier.apply`` against a real kube-apiserver: what lands, what a re-apply does, prune, ownership.

Every object is read back from the server over the test's own connection, never taken from the applier's result.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from sandboxd.adapters.kubernetes import KubernetesApplier
from sandboxd.errors import ApplyRejected, ApplyUnavailable
from sandboxd.render.model import Manifest, RenderedSandbox

from .cluster import FQDN, MANAGER, Cluster, path_of, sandbox

pytestmark = [pytest.mark.kube, pytest.mark.anyio]

STS = "/apis/apps/v1/namespaces/{ns}/statefulsets/pty-server"
ROUTE = "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes/pty-server"
PVC = "/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}"


def container(stateful_set: dict[str, Any]) -> dict[str, Any]:
    containers = stateful_set["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["pty-server"]
    return dict(containers[0])


def managers_of(obj: dict[str, Any], field: str) -> set[str]:
    """Field managers whose managedFields entry owns ``spec.<field>``."""
    return {
        entry["manager"]
        for entry in obj["metadata"].get("managedFields", [])
        if f"f:{field}" in entry.get("fieldsV1", {}).get("f:spec", {})
    }


async def test_create_lands_every_object_with_its_fields(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    sandbox_id = new_id()
    rendered = sandbox(sandbox_id, sessions=2, repos=["acme/app", "acme/tools"])
    ns = rendered.namespace

    result = await applier.apply(rendered, generation=1)

    assert result.changed is True
    assert result.pruned == ()
    assert result.ready_replicas == 0  # no kubelet: nothing is ready
    assert [(r.kind, r.name) for r in result.applied] == [(m.kind, m.name) for m in rendered.manifests]
    for manifest in rendered.manifests:
        live = await cluster.get(path_of(manifest))
        labels = live["metadata"]["labels"]
        assert labels["openova.io/sandbox"] == sandbox_id, manifest.filename
        assert labels["openova.io/managed-by"] == "catalyst", manifest.filename
        appliers = {e["manager"] for e in live["metadata"]["managedFields"] if e["operation"] == "Apply"}
        assert appliers == {MANAGER}, manifest.filename

    stateful_set = await cluster.get(STS.format(ns=ns))
    assert stateful_set["spec"]["replicas"] == 2
    rendered_sts = rendered.by_kind("StatefulSet")[0].body
    expected_env = [e["name"] for e in container(dict(rendered_sts))["env"]]
    live_env = [e["name"] for e in container(stateful_set)["env"]]
    assert live_env == expected_env
    assert {"NEWAPI_URL", "LLM_GATEWAY_TOKEN", "OPENAI_API_KEY", "SANDBOX_ID"} <= set(live_env)
    mounts = {m["name"]: m["mountPath"] for m in container(stateful_set)["volumeMounts"]}
    assert mounts["repo-acme-app"] == "/workspace/acme-app"

    route = await cluster.get(ROUTE.format(ns=ns))
    assert route["spec"]["hostnames"] == [f"sandbox.{FQDN}"]
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "cilium-gateway", "namespace": "kube-system"}
    ]
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["port"]) for b in backends] == [("pty-server", 7681)]

    for slug in ("acme-app", "acme-tools"):
        claim = await cluster.get(PVC.format(ns=ns, name=f"repo-{slug}"))
        assert claim["metadata"]["labels"] == {
            "openova.io/sandbox": sandbox_id,
            "openova.io/managed-by": "catalyst",
            "openova.io/sandbox-repo": slug,
        }
        assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"

    token = await cluster.get(f"/api/v1/namespaces/{ns}/secrets/sandbox-llm-gateway-token")
    assert "data" not in token  # rendered without a value: the token writer fills it


async def test_a_second_apply_changes_nothing(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    """Re-applying the same objects writes nothing: every resourceVersion stays and ``changed`` is False.

    One server quirk, pinned here: the API server rewrites a PersistentVolumeClaim once on its first update
    after creation (a new resourceVersion, no visible change: the stored encoding of a freshly created claim
    differs from an updated one's). From then on a PVC is as stable as everything else.
    """
    rendered = sandbox(new_id(), repos=["acme/app"])
    await applier.apply(rendered, generation=1)
    created = await cluster.versions(rendered)

    second = await applier.apply(rendered, generation=1)
    after_second = await cluster.versions(rendered)
    moved = {key for key in created if created[key] != after_second[key]}
    assert {kind for kind, _ in moved} <= {"PersistentVolumeClaim"}

    third = await applier.apply(rendered, generation=1)
    assert third.changed is False
    assert third.pruned == ()
    assert await cluster.versions(rendered) == after_second
    assert second.changed == bool(moved)


async def test_more_concurrent_sessions_more_replicas(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    sandbox_id = new_id()
    await applier.apply(sandbox(sandbox_id, sessions=2), generation=1)
    raised = sandbox(sandbox_id, sessions=4)

    result = await applier.apply(raised, generation=2)

    assert result.changed is True
    assert (await cluster.get(STS.format(ns=raised.namespace)))["spec"]["replicas"] == 4


async def test_a_removed_repo_keeps_its_volume_and_nothing_else_is_pruned(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    sandbox_id = new_id()
    both = sandbox(sandbox_id, repos=["acme/app", "acme/tools"])
    await applier.apply(both, generation=1)
    one = sandbox(sandbox_id, repos=["acme/app"])

    result = await applier.apply(one, generation=2)

    assert result.pruned == ()
    kept = await cluster.get(PVC.format(ns=one.namespace, name="repo-acme-tools"))
    assert kept["metadata"]["labels"]["openova.io/sandbox"] == sandbox_id
    assert "deletionTimestamp" not in kept["metadata"]
    for manifest in one.manifests:
        await cluster.get(path_of(manifest))
    mounts = [m["name"] for m in container(await cluster.get(STS.format(ns=one.namespace)))["volumeMounts"]]
    assert "repo-acme-tools" not in mounts


async def test_objects_no_longer_rendered_are_pruned(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    """Switching the MCP transport from http to stdio leaves its Deployment and Service behind: prune takes them."""
    sandbox_id = new_id()
    http = sandbox(sandbox_id, mcp_transport="http")
    await applier.apply(http, generation=1)
    companions = [m for m in http.manifests if m.kind in ("Deployment", "Service") and m.name != "pty-server"]
    assert len(companions) == 2
    stdio = sandbox(sandbox_id, mcp_transport="stdio")

    result = await applier.apply(stdio, generation=2)

    assert sorted((r.kind, r.name) for r in result.pruned) == sorted((m.kind, m.name) for m in companions)
    assert result.changed is True
    for manifest in companions:
        assert await cluster.read(path_of(manifest)) is None
    for manifest in stdio.manifests:
        await cluster.get(path_of(manifest))
    again = await applier.apply(stdio, generation=2)
    assert again.pruned == ()


async def test_force_takes_a_field_back_from_another_manager(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    """Ownership outcome: this reconciler is the source of truth for every field it renders.

    Another manager cannot take ``spec.replicas`` with server-side apply unless it forces (409 Conflict naming
    ``sandboxd``); a plain update (``kubectl scale`` / ``kubectl edit``: a merge patch) does take it. The next apply,
    with ``force``, sets the rendered value again and removes the field from the other manager's managedFields
    entry: the other manager loses, every time, until the desired state itself changes.
    """
    rendered = sandbox(new_id(), sessions=2)
    await applier.apply(rendered, generation=1)
    path = STS.format(ns=rendered.namespace)
    theirs = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "pty-server", "namespace": rendered.namespace},
        "spec": {"replicas": 5},
    }
    with pytest.raises(ApiException) as refused:
        await cluster.call("PATCH", path, theirs, content_type="application/apply-patch+yaml", fieldManager="kubectl")
    assert refused.value.status == 409
    assert "sandboxd" in json.loads(refused.value.body or b"{}")["message"]

    scaled = await cluster.merge_patch(path, {"spec": {"replicas": 5}}, manager="kubectl")
    assert scaled["spec"]["replicas"] == 5
    assert "kubectl" in managers_of(scaled, "replicas")

    result = await applier.apply(rendered, generation=1)

    live = await cluster.get(path)
    assert live["spec"]["replicas"] == 2
    assert result.changed is True
    assert managers_of(live, "replicas") == {MANAGER}


async def test_another_writer_without_force_is_a_retryable_conflict(
    applier: KubernetesApplier, new_id: Callable[[], str]
) -> None:
    """A 409 from the server (here: server-side apply without force on a field sandboxd owns) is ApplyUnavailable."""
    rendered = sandbox(new_id())
    await applier.apply(rendered, generation=1)
    manifest = rendered.by_kind("StatefulSet")[0]
    body = {**manifest.body, "spec": {**manifest.body["spec"], "replicas": 7}}
    with pytest.raises(ApplyUnavailable) as conflict:
        await applier.transport.apply(path_of(manifest), body, field_manager="someone-else", force=False)
    assert "HTTP 409" in conflict.value.message


async def test_an_object_the_server_refuses_is_rejected_with_its_message(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    """An invalid parentRef sectionName passes the renderer but not the Gateway API schema: HTTP 422.

    The error is permanent and carries the API server's own words; every other object was still applied.
    """
    rendered = sandbox(new_id(), gateway_section="Not_A_Section")

    with pytest.raises(ApplyRejected) as rejected:
        await applier.apply(rendered, generation=1)

    message = rejected.value.message
    assert message.startswith('HTTPRoute.gateway.networking.k8s.io "pty-server" is invalid: ')
    assert "spec.parentRefs[0].sectionName" in message
    assert "Bearer" not in message
    for manifest in rendered.manifests:
        if manifest.kind != "HTTPRoute":
            await cluster.get(path_of(manifest))


async def test_a_field_the_schema_lacks_is_rejected_not_retried(
    applier: KubernetesApplier, new_id: Callable[[], str]
) -> None:
    """Server-side apply answers an undeclared field with HTTP 500 ("failed to create typed patch object"):
    retrying cannot fix the object, so it is ApplyRejected, not ApplyUnavailable."""
    rendered = sandbox(new_id())
    bogus = tuple(
        Manifest(m.filename, {**m.body, "bogus": True}) if m.kind == "ConfigMap" else m for m in rendered.manifests
    )
    broken = RenderedSandbox(**{**_fields(rendered), "manifests": bogus})

    with pytest.raises(ApplyRejected) as rejected:
        await applier.apply(broken, generation=1)

    assert "failed to create typed patch object" in rejected.value.message
    assert ".bogus: field not declared in schema" in rejected.value.message


async def test_a_kind_outside_the_table_is_refused_before_anything_is_written(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    rendered = sandbox(new_id())
    job = Manifest("job.yaml", {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}})
    odd = RenderedSandbox(**{**_fields(rendered), "manifests": (*rendered.manifests, job)})

    with pytest.raises(ApplyRejected, match="does not manage batch/v1 Job"):
        await applier.apply(odd, generation=1)

    assert await cluster.read(f"/api/v1/namespaces/{rendered.namespace}") is None


async def test_ready_replicas_reads_the_stateful_set(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    rendered = sandbox(new_id(), sessions=3)
    assert await applier.ready_replicas(rendered) == 0  # nothing applied yet: no StatefulSet, none ready
    await applier.apply(rendered, generation=1)
    path = STS.format(ns=rendered.namespace) + "/status"
    await cluster.merge_patch(path, {"status": {"replicas": 3, "readyReplicas": 2}}, manager="kubelet-stand-in")

    assert await applier.ready_replicas(rendered) == 2
    assert (await applier.apply(rendered, generation=1)).ready_replicas == 2


def _fields(rendered: RenderedSandbox) -> dict[str, Any]:
    return {name: getattr(rendered, name) for name in RenderedSandbox.__dataclass_fields__}

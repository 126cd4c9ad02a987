"""Self-tests of the real kube-apiserver harness (tests/support/kubeapi.py, kube_fixtures.py).

They pin the behaviour the reconciler relies on: server-side apply (typed and custom objects) is
create-or-update and idempotent, invalid objects get 422, watches see changes, and - since no kubelet
runs - a test can make a StatefulSet look ready by writing its status subresource.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from support.kube_fixtures import KubeTarget

pytestmark = pytest.mark.kube

APPLY = "application/apply-patch+yaml"
MANAGER = "sandboxd-harness-test"
GW_GROUP, GW_VERSION, HTTPROUTES = "gateway.networking.k8s.io", "v1", "httproutes"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def statefulset(name: str, ns: str, *, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "registry.invalid/sandbox:1"}]},
            },
        },
    }


def httproute(name: str, ns: str, host: str = "a.sandbox.example.test") -> dict[str, Any]:
    return {
        "apiVersion": f"{GW_GROUP}/{GW_VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "parentRefs": [{"name": "cilium-gateway", "namespace": "kube-system"}],
            "hostnames": [host],
            "rules": [{"backendRefs": [{"name": name, "port": 8080}]}],
        },
    }


async def apply_route(api: Any, body: dict[str, Any]) -> dict[str, Any]:
    """SSA an HTTPRoute and return the stored object.

    kubernetes-asyncio 36.1.0's CustomObjectsApi.patch_* maps only HTTP 200 to a body
    (``response_types_map = {200: "object"}``): when apply *creates* the object (HTTP 201) it returns
    None. So read the object back in that case (test_custom_object_apply_create_returns_none pins this)."""
    custom = client.CustomObjectsApi(api)
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    result = await custom.patch_namespaced_custom_object(
        GW_GROUP, GW_VERSION, ns, HTTPROUTES, name, body, field_manager=MANAGER, force=True, _content_type=APPLY
    )
    if result is None:
        result = await custom.get_namespaced_custom_object(GW_GROUP, GW_VERSION, ns, HTTPROUTES, name)
    return dict(result)


def test_version_and_readyz(kube_api: KubeTarget) -> None:
    """The local server reports the pinned version and is ready (sync helper, no event loop)."""
    if kube_api.server is None:
        pytest.skip("external cluster: nothing local to inspect")
    status, body = kube_api.server.request("GET", "/readyz")
    assert status == 200, body
    status, body = kube_api.server.request("GET", "/version")
    assert status == 200
    assert b'"gitVersion": "v1.' in body


@pytest.mark.anyio
async def test_server_side_apply_is_create_or_update_and_idempotent(
    kube_api: KubeTarget, kube_unique_name: Callable[..., str]
) -> None:
    ns, name = kube_unique_name("ns"), kube_unique_name("sbx")
    async with kube_api.api_client() as api:
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        ns_body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"t": "1"}}}

        first_ns = await core.patch_namespace(ns, ns_body, field_manager=MANAGER, force=True, _content_type=APPLY)
        again_ns = await core.patch_namespace(ns, ns_body, field_manager=MANAGER, force=True, _content_type=APPLY)
        assert first_ns.metadata.resource_version == again_ns.metadata.resource_version

        sts = statefulset(name, ns)
        first = await apps.patch_namespaced_stateful_set(
            name, ns, sts, field_manager=MANAGER, force=True, _content_type=APPLY
        )
        again = await apps.patch_namespaced_stateful_set(
            name, ns, sts, field_manager=MANAGER, force=True, _content_type=APPLY
        )
        assert first.metadata.resource_version == again.metadata.resource_version
        assert again.spec.replicas == 1
        assert any(m.manager == MANAGER and m.operation == "Apply" for m in again.metadata.managed_fields)

        route = httproute(name, ns)
        r1 = await apply_route(api, route)
        r2 = await apply_route(api, route)
        assert r1["metadata"]["resourceVersion"] == r2["metadata"]["resourceVersion"]
        assert r2["spec"]["hostnames"] == ["a.sandbox.example.test"]

        # A changed field is an update (new resourceVersion), still through apply.
        r3 = await apply_route(api, httproute(name, ns, host="b.sandbox.example.test"))
        assert r3["metadata"]["resourceVersion"] != r2["metadata"]["resourceVersion"]
        assert r3["spec"]["hostnames"] == ["b.sandbox.example.test"]


@pytest.mark.anyio
async def test_invalid_objects_are_refused_with_422(
    kube_api: KubeTarget, kube_namespace: str, kube_unique_name: Callable[..., str]
) -> None:
    name = kube_unique_name("bad")
    async with kube_api.api_client() as api:
        with pytest.raises(ApiException) as sts_err:
            await client.AppsV1Api(api).patch_namespaced_stateful_set(
                name,
                kube_namespace,
                statefulset(name, kube_namespace, replicas=-1),
                field_manager=MANAGER,
                force=True,
                _content_type=APPLY,
            )
        assert sts_err.value.status == 422

        # CRD OpenAPI schema validation (hostname pattern) is enforced too.
        with pytest.raises(ApiException) as route_err:
            await apply_route(api, httproute(name, kube_namespace, host="Not_A_Hostname!"))
        assert route_err.value.status == 422


@pytest.mark.anyio
async def test_watch_sees_a_change(
    kube_api: KubeTarget, kube_namespace: str, kube_unique_name: Callable[..., str]
) -> None:
    name = kube_unique_name("r")
    async with kube_api.api_client() as api:
        custom = client.CustomObjectsApi(api)
        await apply_route(api, httproute(name, kube_namespace))
        listed = await custom.list_namespaced_custom_object(GW_GROUP, GW_VERSION, kube_namespace, HTTPROUTES)
        rv = listed["metadata"]["resourceVersion"]

        async def first_modified() -> dict[str, Any]:
            w = watch.Watch()
            async with w.stream(
                custom.list_namespaced_custom_object,
                GW_GROUP,
                GW_VERSION,
                kube_namespace,
                HTTPROUTES,
                resource_version=rv,
                timeout_seconds=30,
            ) as stream:
                async for event in stream:
                    if event["type"] == "MODIFIED" and event["object"]["metadata"]["name"] == name:
                        return dict(event["object"])
            raise AssertionError("watch ended without a MODIFIED event")

        watcher = asyncio.create_task(first_modified())
        await asyncio.sleep(0)
        await apply_route(api, httproute(name, kube_namespace, host="changed.sandbox.example.test"))
        obj = await asyncio.wait_for(watcher, timeout=30)
        assert obj["spec"]["hostnames"] == ["changed.sandbox.example.test"]


@pytest.mark.anyio
async def test_statefulset_status_can_be_written_by_the_test(
    kube_api: KubeTarget, kube_namespace: str, kube_unique_name: Callable[..., str]
) -> None:
    name = kube_unique_name("sbx")
    async with kube_api.api_client() as api:
        apps = client.AppsV1Api(api)
        sts = await apps.patch_namespaced_stateful_set(
            name,
            kube_namespace,
            statefulset(name, kube_namespace),
            field_manager=MANAGER,
            force=True,
            _content_type=APPLY,
        )
        assert not sts.status.ready_replicas  # nothing runs pods here

        await apps.patch_namespaced_stateful_set_status(
            name,
            kube_namespace,
            {
                "status": {
                    "observedGeneration": sts.metadata.generation,
                    "replicas": 1,
                    "readyReplicas": 1,
                    "availableReplicas": 1,
                    "currentReplicas": 1,
                    "updatedReplicas": 1,
                }
            },
            _content_type="application/merge-patch+json",
        )
        got = await apps.read_namespaced_stateful_set_status(name, kube_namespace)
        assert got.status.ready_replicas == 1
        assert got.status.observed_generation == sts.metadata.generation
        assert got.spec.replicas == 1  # the status write did not touch spec


@pytest.mark.anyio
async def test_custom_object_apply_create_returns_none(
    kube_api: KubeTarget, kube_namespace: str, kube_unique_name: Callable[..., str]
) -> None:
    """Client pitfall (kubernetes-asyncio 36.1.0): a create-by-apply of a custom object answers HTTP 201,
    which the generated CustomObjectsApi does not deserialize, so the call returns None. An update
    (HTTP 200) returns the object. Code that needs the created object must read it back."""
    name = kube_unique_name("r")
    body = httproute(name, kube_namespace)
    async with kube_api.api_client() as api:
        custom = client.CustomObjectsApi(api)
        args = (GW_GROUP, GW_VERSION, kube_namespace, HTTPROUTES, name, body)
        created = await custom.patch_namespaced_custom_object(
            *args, field_manager=MANAGER, force=True, _content_type=APPLY
        )
        assert api.last_response.status == 201
        assert created is None, "client now deserializes 201: apply_route's read-back can go"
        updated = await custom.patch_namespaced_custom_object(
            *args, field_manager=MANAGER, force=True, _content_type=APPLY
        )
        assert api.last_response.status == 200
        assert updated["metadata"]["name"] == name

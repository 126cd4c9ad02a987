"""docker-compose.yml's ``kube`` profile (``docker``): the whole deployed path in compose. NATS, ``sandboxd init``,
etcd and kube-apiserver in containers made from the binaries tools/kube/build.sh builds, the Gateway API CRDs
installed by a one-shot, and the reconciler applying by server-side apply. A create published from the host ends
as objects on that API server, written by the reconciler's field manager with Apply.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.spine import unique_id

from .compose_stacks import Stack, publisher, reconciled, running_stack

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1500)]

# Every service, dependencies included: `down` removes only the services it is given.
SERVICES = ["nats", "init", "kube-pki", "etcd", "kube-apiserver", "kube-crds", "reconciler-kube"]


@pytest.fixture(scope="module")
def stack(
    sandboxd_image: str, nats_image: str, kube_images: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("compose-kube")
    with running_stack(folder, services=SERVICES, images={"NATS_IMAGE": nats_image}, profiles=["kube"]) as stack:
        yield stack


class ApiServer:
    """The stack's kube-apiserver from the host: its published port, its CA, the admin token kube-pki made."""

    def __init__(self, stack: Stack, folder: Path) -> None:
        ca = folder / "ca.crt"
        ca.write_text(stack.read("kube-apiserver", "/pki/ca.crt"))
        self.context = ssl.create_default_context(cafile=str(ca))
        self.token = stack.read("kube-apiserver", "/pki/tokens.csv").split(",", 1)[0]
        self.url = f"https://127.0.0.1:{stack.env['KUBE_API_PORT']}"

    def get(self, path: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        request = urllib.request.Request(self.url + path, headers=headers)  # noqa: S310 - https, our own server
        with urllib.request.urlopen(request, context=self.context, timeout=10) as response:  # noqa: S310
            return dict(json.loads(response.read()))

    def path_of(self, api_version: str, plural: str, name: str, namespace: str | None) -> str:
        root = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        scope = f"/namespaces/{namespace}" if namespace else ""
        return f"{root}{scope}/{plural}/{name}"


def applied_by_the_reconciler(obj: dict[str, Any]) -> bool:
    return any(
        entry["manager"] == "sandboxd" and entry["operation"] == "Apply" for entry in obj["metadata"]["managedFields"]
    )


def test_the_control_plane_and_the_reconciler_are_healthy(stack: Stack) -> None:
    states = {c.Service: (c.State, c.Health) for c in stack.compose.get_containers(include_all=True)}

    for service in ("nats", "etcd", "kube-apiserver", "reconciler-kube"):
        assert states[service] == ("running", "healthy"), service
    for one_shot in ("init", "kube-pki", "kube-crds"):
        assert states[one_shot][0] == "exited", one_shot


@pytest.mark.anyio
async def test_a_create_is_applied_to_the_api_server_by_server_side_apply(stack: Stack, tmp_path: Path) -> None:
    sandbox_id = unique_id("kube")
    async with publisher(stack) as client:
        await client.create(sandbox_id, f"{sandbox_id}@acme.test", repos=["acme/app"])
        status = await client.wait_status(sandbox_id, reconciled, timeout=120)

    api = ApiServer(stack, tmp_path)
    namespace = api.get(f"/api/v1/namespaces/{status.namespace}")
    assert applied_by_the_reconciler(namespace)
    kinds = {ref.kind for ref in status.applied_objects}
    assert {"Namespace", "StatefulSet", "HTTPRoute", "PersistentVolumeClaim"} <= kinds
    plurals = {
        "StatefulSet": "statefulsets",
        "HTTPRoute": "httproutes",
        "PersistentVolumeClaim": "persistentvolumeclaims",
    }
    for ref in status.applied_objects:
        if ref.kind in plurals:
            found = api.get(api.path_of(ref.api_version, plurals[ref.kind], ref.name, ref.namespace))
            assert applied_by_the_reconciler(found), (ref.kind, ref.name)

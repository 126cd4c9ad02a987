"""The chart installed, not only templated (``kube``): ``helm install`` onto the test kube-apiserver, every object
of the release read back from the API server as Helm's, the reconciler's ServiceAccount, as installed, applying a
rendered sandbox with a token the API server issues, and ``helm uninstall`` removing the cluster-wide objects.

No kubelet runs here, so no pod starts: the objects and the permissions are what is checked. What each ClusterRole
grants, and what it refuses, is test_helm_rbac.py's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from kubernetes_asyncio.client.exceptions import ApiException

from sandboxd.adapters.kubernetes.resources import resource_of
from sandboxd.app.appliers import build_applier
from sandboxd.models.spec import SandboxSpec
from sandboxd.render import RenderRequest, render
from sandboxd.settings import ApplierSettings, load
from support import kuberaw
from support.kube_fixtures import KubeTarget
from support.spine import runtime_settings, spec

from .charts import CHART, MINIMAL_VALUES, Helm, env_of, one

pytestmark = [pytest.mark.kube, pytest.mark.timeout(300)]

#: kind → the API path of its collection, {ns} the release namespace.
COLLECTIONS: Final = {
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "PodDisruptionBudget": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "ValidatingAdmissionPolicy": "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
}


@dataclass(frozen=True)
class Installed:
    name: str
    namespace: str
    objects: list[dict[str, Any]]  # `helm get manifest`
    kubeconfig: Path

    def path_of(self, obj: dict[str, Any]) -> str:
        return f"{COLLECTIONS[obj['kind']].format(ns=self.namespace)}/{obj['metadata']['name']}"


def helm_on(helm: Helm, kube_api: KubeTarget, *args: str) -> str:
    proc = helm.run(*args, "--kubeconfig", str(kube_api.kubeconfig_path))
    assert proc.returncode == 0, f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def installed(
    helm: Helm, kube_api: KubeTarget, kube_namespace: str, kube_unique_name: Callable[..., str]
) -> Iterator[Installed]:
    name = kube_unique_name("inst", max_len=24)  # cluster-scoped names carry the release: one per test
    helm_on(helm, kube_api, "install", name, str(CHART), "--namespace", kube_namespace, "--values", str(MINIMAL_VALUES))
    manifest = helm_on(helm, kube_api, "get", "manifest", name, "--namespace", kube_namespace)
    objects = [doc for doc in yaml.safe_load_all(manifest) if doc]
    try:
        yield Installed(name, kube_namespace, objects, kube_api.kubeconfig_path)
    finally:
        helm.run("uninstall", name, "--namespace", kube_namespace, "--kubeconfig", str(kube_api.kubeconfig_path))


@pytest.fixture
async def admin(kube_api: KubeTarget) -> AsyncIterator[Any]:
    async with kube_api.api_client() as client:
        yield client


async def status_of(api: Any, path: str) -> int:
    try:
        await kuberaw.call(api, "GET", path)
    except ApiException as exc:
        return int(exc.status)
    return 200


@pytest.mark.anyio
async def test_install_creates_every_object_as_the_release_s(
    installed: Installed, helm: Helm, kube_api: KubeTarget, admin: Any
) -> None:
    status = json.loads(helm_on(helm, kube_api, "status", installed.name, "-n", installed.namespace, "-o", "json"))
    assert status["info"]["status"] == "deployed"
    kinds = {obj["kind"] for obj in installed.objects}
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"} <= kinds <= set(COLLECTIONS)

    for obj in installed.objects:
        found = await kuberaw.call(admin, "GET", installed.path_of(obj))
        assert found["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm", installed.path_of(obj)
        assert found["metadata"]["annotations"]["meta.helm.sh/release-name"] == installed.name
    for deployment in (o for o in installed.objects if o["kind"] == "Deployment"):
        found = await kuberaw.call(admin, "GET", installed.path_of(deployment))
        account = found["spec"]["template"]["spec"]["serviceAccountName"]
        assert await status_of(admin, f"/api/v1/namespaces/{installed.namespace}/serviceaccounts/{account}") == 200
        container = found["spec"]["template"]["spec"]["containers"][0]
        assert container["securityContext"]["runAsNonRoot"] is True


@pytest.mark.anyio
async def test_the_installed_reconciler_account_applies_a_sandbox(
    installed: Installed,
    admin: Any,
    tmp_path: Path,
    kube_unique_name: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The applier as the installed Deployment configures it (its environment), with its ServiceAccount's token."""
    deployment = await kuberaw.call(admin, "GET", installed.path_of(one(installed.objects, "Deployment", "reconciler")))
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    token_path = f"/api/v1/namespaces/{installed.namespace}/serviceaccounts/{account}/token"
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}}
    token = (await kuberaw.call(admin, "POST", token_path, request))["status"]["token"]
    config = yaml.safe_load(installed.kubeconfig.read_text())
    config["users"] = [{"name": config["users"][0]["name"], "user": {"token": token}}]
    kubeconfig = tmp_path / "reconciler.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    kubeconfig.chmod(0o600)

    sandbox_id = kube_unique_name("inst-sb", max_len=30)
    email = f"{sandbox_id}@install.test"
    rendered = render(
        RenderRequest(sandbox_id=sandbox_id, spec=SandboxSpec.model_validate(spec(email, repos=["acme/app"]))),
        runtime_settings(),
    )
    for variable, entry in env_of(deployment).items():
        if "value" in entry:  # values from Secrets and fields are not the applier's
            monkeypatch.setenv(variable, entry["value"])
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    settings = load(ApplierSettings)
    assert settings.kind == "kubernetes"
    assert settings.kube_namespace_grants  # the chart's per-namespace grants, written right after the Namespace
    applier = await build_applier(settings)
    try:
        await applier.apply(rendered, generation=1)
        for manifest in rendered.manifests:
            found = await kuberaw.call(admin, "GET", resource_of(manifest).item(manifest.name, manifest.namespace))
            assert found["metadata"]["name"] == manifest.name
    finally:
        await applier.delete(rendered, purge=True)
        await applier.aclose()


def test_uninstall_removes_the_cluster_wide_objects(
    helm: Helm, kube_api: KubeTarget, kube_namespace: str, kube_unique_name: Callable[..., str]
) -> None:
    name = kube_unique_name("uninst", max_len=24)
    helm_on(helm, kube_api, "install", name, str(CHART), "--namespace", kube_namespace, "--values", str(MINIMAL_VALUES))
    manifest = helm_on(helm, kube_api, "get", "manifest", name, "--namespace", kube_namespace)
    cluster_wide = [d for d in yaml.safe_load_all(manifest) if d and "{ns}" not in COLLECTIONS[d["kind"]]]
    assert cluster_wide

    helm_on(helm, kube_api, "uninstall", name, "--namespace", kube_namespace, "--wait")

    async def statuses(api: Any) -> list[int]:
        paths = [f"{COLLECTIONS[d['kind']]}/{d['metadata']['name']}" for d in cluster_wide]
        return [await status_of(api, path) for path in paths]

    assert kube_api.run(statuses) == [404] * len(cluster_wide)

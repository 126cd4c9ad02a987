"""The chart's RBAC: exactly the kinds the renderer emits, no wildcards, and enough for the real processes.

Offline, the reconciler's ClusterRole is compared with the kinds of a rendered sandbox (http MCP transport, so the
Deployment is in it). Against the test kube-apiserver (``kube``): every chart manifest passes a server-side dry
run, and the ServiceAccounts, bound as the chart binds them, are used for real with tokens the API server issues:
the reconciler's Kubernetes applier creates, prunes and purges a sandbox (its Role and RoleBinding included, which
RBAC escalation prevention would refuse without the chart's `escalate`/`bind` grant), and the scaler sets a
StatefulSet's scale and nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from kubernetes_asyncio.client.exceptions import ApiException

from sandboxd.adapters.kubernetes.resources import resource_of
from sandboxd.app.appliers import build_applier
from sandboxd.models.spec import SandboxSpec
from sandboxd.render import RenderedSandbox, RenderRequest, rbac, render
from sandboxd.settings import ApplierSettings
from support import kuberaw
from support.kube_fixtures import KubeTarget
from support.spine import runtime_settings, spec

from .charts import FULL_VALUES, MINIMAL_VALUES, Helm, by_kind, one

APPLY_VERBS: Final = {"get", "list", "watch", "create", "patch", "delete"}
PLURALS: Final = {
    "ServiceAccount": "serviceaccounts",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "Service": "services",
    "Deployment": "deployments",
    "PodDisruptionBudget": "poddisruptionbudgets",
}
CLUSTER_SCOPED: Final = {"ClusterRole", "ClusterRoleBinding"}


def http_mcp_sandbox(sandbox_id: str = "rbac-check", *, transport: str = "http") -> RenderedSandbox:
    """A sandbox with every kind the renderer has: http MCP (Deployment + Service), repos (PVCs)."""
    request = RenderRequest(
        sandbox_id=sandbox_id,
        spec=SandboxSpec.model_validate(spec(f"{sandbox_id}@rbac.test", sessions=2, repos=["acme/app"])),
    )
    return render(request, runtime_settings(mcp_transport=transport))


def rendered_resources() -> set[tuple[str, str]]:
    """(API group, resource) of every object the renderer emits."""
    out = set()
    for manifest in http_mcp_sandbox().manifests:
        resource = resource_of(manifest)
        group = resource.api_version.rpartition("/")[0]
        out.add((group, resource.plural))
    return out


def grants(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """(API group, resource) → verbs, for the rules without resourceNames."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        if rule.get("resourceNames"):
            continue
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


# --- offline -------------------------------------------------------------------------------------------------


def test_no_wildcards_and_no_non_resource_urls(helm: Helm) -> None:
    for values in (MINIMAL_VALUES, FULL_VALUES):
        for role in by_kind(helm.template(values=(values,)), "ClusterRole"):
            for rule in role["rules"]:
                assert "nonResourceURLs" not in rule, role["metadata"]["name"]
                for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                    assert not any("*" in item for item in rule.get(key, [])), (role["metadata"]["name"], rule)


def test_reconciler_role_is_exactly_the_rendered_kinds(helm: Helm) -> None:
    role = one(helm.template(), "ClusterRole", "reconciler")
    granted = grants(role)

    assert set(granted) == rendered_resources()
    for resource, verbs in granted.items():
        assert verbs == APPLY_VERBS, resource


def test_reconciler_may_write_and_bind_only_the_rendered_role(helm: Helm) -> None:
    role = one(helm.template(), "ClusterRole", "reconciler")
    named = [rule for rule in role["rules"] if rule.get("resourceNames")]

    assert named == [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["roles"],
            "resourceNames": [rbac.NAME],
            "verbs": ["escalate", "bind"],
        }
    ]
    rendered_roles = [m for m in http_mcp_sandbox().manifests if m.kind == "Role"]
    assert [m.name for m in rendered_roles] == [rbac.NAME]
    (binding,) = [m for m in http_mcp_sandbox().manifests if m.kind == "RoleBinding"]
    assert binding.body["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": rbac.NAME}


def test_scaler_role_is_only_statefulset_scale(helm: Helm) -> None:
    role = one(helm.template(), "ClusterRole", "scaler")

    assert grants(role) == {
        ("apps", "statefulsets"): {"get", "list"},
        ("apps", "statefulsets/scale"): {"get", "patch", "update"},
    }
    assert all(not rule.get("resourceNames") for rule in role["rules"])


@pytest.mark.parametrize("kind", ["gitops", "directory"])
def test_appliers_without_a_cluster_get_no_reconciler_role(helm: Helm, kind: str) -> None:
    objects = helm.template(set_values={"applier.kind": kind, "applier.gitops.repo": "https://git.example.com/r"})

    assert [r["metadata"]["name"] for r in by_kind(objects, "ClusterRole")] == ["sbx-sandboxd-scaler"]


def test_bindings_name_the_chart_service_accounts(helm: Helm) -> None:
    objects = helm.template(namespace="platform")
    accounts = {sa["metadata"]["name"] for sa in by_kind(objects, "ServiceAccount")}

    for binding in by_kind(objects, "ClusterRoleBinding"):
        (subject,) = binding["subjects"]
        assert subject["kind"] == "ServiceAccount"
        assert subject["namespace"] == "platform"
        assert subject["name"] in accounts
        assert binding["roleRef"]["name"] == binding["metadata"]["name"]
    for deployment in by_kind(objects, "Deployment"):
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] in accounts


# --- against the test API server ---------------------------------------------------------------------------


@dataclass
class Api:
    """Raw calls as one identity (the harness admin, or a ServiceAccount token)."""

    client: Any

    async def call(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json", **query: str
    ) -> Any:
        return await kuberaw.call(self.client, method, path, body, content_type=content_type, **query)

    async def apply(self, obj: dict[str, Any], *, namespace: str | None, dry_run: bool = False) -> Any:
        query = {"fieldManager": "sandboxd-chart-test", "force": "true"}
        if dry_run:
            query["dryRun"] = "All"
        return await self.call(
            "PATCH", object_path(obj, namespace), obj, content_type="application/apply-patch+yaml", **query
        )

    async def status_of(self, method: str, path: str, body: Any = None, **kwargs: Any) -> int:
        """The HTTP status of a call (200 when it succeeds)."""
        try:
            await self.call(method, path, body, **kwargs)
        except ApiException as exc:
            return int(exc.status)
        return 200


def object_path(obj: dict[str, Any], namespace: str | None) -> str:
    api_version, kind, name = obj["apiVersion"], obj["kind"], obj["metadata"]["name"]
    root = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    if kind in CLUSTER_SCOPED:
        return f"{root}/{PLURALS[kind]}/{name}"
    return f"{root}/namespaces/{namespace}/{PLURALS[kind]}/{name}"


@dataclass
class Release:
    """The chart's ServiceAccounts, ClusterRoles and bindings, installed for real in ``namespace``."""

    name: str
    namespace: str
    objects: list[dict[str, Any]]
    kubeconfig: Path

    def account(self, component: str) -> str:
        return str(one(self.objects, "ServiceAccount", component)["metadata"]["name"])

    async def token_kubeconfig(self, admin: Api, component: str, folder: Path) -> Path:
        """A kubeconfig that authenticates as ``component``'s ServiceAccount (a token the API server issues)."""
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        }
        path = f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{self.account(component)}/token"
        token = (await admin.call("POST", path, request))["status"]["token"]
        config = yaml.safe_load(self.kubeconfig.read_text())
        config["users"] = [{"name": config["users"][0]["name"], "user": {"token": token}}]
        target = folder / f"{component}.kubeconfig"
        target.write_text(yaml.safe_dump(config))
        target.chmod(0o600)
        return target


@pytest.fixture
async def admin(kube_api: KubeTarget) -> AsyncIterator[Api]:
    async with kube_api.api_client() as client:
        yield Api(client)


@pytest.fixture
async def release(
    helm: Helm, kube_api: KubeTarget, kube_namespace: str, kube_unique_name: Callable[..., str], admin: Api
) -> AsyncIterator[Release]:
    name = kube_unique_name("rel", max_len=24)  # cluster-scoped names are per release: unique per test
    objects = helm.template(namespace=kube_namespace, release=name)
    installed = [o for o in objects if o["kind"] in {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}]
    for obj in installed:
        await admin.apply(obj, namespace=kube_namespace)
    try:
        yield Release(name, kube_namespace, objects, kube_api.kubeconfig_path)
    finally:
        for obj in installed:
            if obj["kind"] in CLUSTER_SCOPED:
                await admin.status_of("DELETE", object_path(obj, None))


@pytest.fixture
def as_identity(kube_api: KubeTarget) -> Callable[[Path], Any]:
    """``async with as_identity(kubeconfig) as api`` — an ``Api`` authenticating with that kubeconfig."""
    from contextlib import asynccontextmanager  # noqa: PLC0415 - local to the fixture that needs it

    from kubernetes_asyncio import config  # noqa: PLC0415

    @asynccontextmanager
    async def open_api(path: Path) -> AsyncIterator[Api]:
        client = await config.new_client_from_config(config_file=str(path))
        try:
            yield Api(client)
        finally:
            await client.close()

    return open_api


@pytest.mark.kube
@pytest.mark.anyio
@pytest.mark.parametrize("values", [MINIMAL_VALUES, FULL_VALUES], ids=lambda p: Path(p).stem)
async def test_chart_manifests_pass_server_side_dry_run(
    helm: Helm, admin: Api, kube_namespace: str, values: Path
) -> None:
    objects = helm.template(values=(values,), namespace=kube_namespace)
    # The ServiceMonitor's CRD (prometheus-operator) is not part of the test API server.
    checked = [o for o in objects if o["kind"] != "ServiceMonitor"]
    assert {o["kind"] for o in checked} <= set(PLURALS)

    for obj in checked:
        result = await admin.apply(obj, namespace=kube_namespace, dry_run=True)
        assert result["metadata"]["name"] == obj["metadata"]["name"]
    # Nothing was written.
    for obj in checked:
        assert await admin.status_of("GET", object_path(obj, kube_namespace)) == 404


@pytest.mark.kube
@pytest.mark.anyio
async def test_reconciler_account_creates_prunes_and_purges_a_sandbox(
    release: Release, admin: Api, tmp_path: Path, kube_unique_name: Callable[..., str]
) -> None:
    kubeconfig = await release.token_kubeconfig(admin, "reconciler", tmp_path)
    applier = await build_applier(ApplierSettings(kind="kubernetes", kubeconfig=str(kubeconfig)))
    sandbox_id = kube_unique_name("sb", max_len=30)
    rendered = http_mcp_sandbox(sandbox_id)
    try:
        await applier.apply(rendered, generation=1)
        for manifest in rendered.manifests:
            found = await admin.call("GET", resource_of(manifest).item(manifest.name, manifest.namespace))
            assert found["metadata"]["name"] == manifest.name

        # stdio transport: the MCP Deployment and Service are pruned.
        await applier.apply(http_mcp_sandbox(sandbox_id, transport="stdio"), generation=2)
        deployment = next(m for m in rendered.manifests if m.kind == "Deployment")
        assert await admin.status_of("GET", resource_of(deployment).item(deployment.name, rendered.namespace)) == 404

        await applier.delete(http_mcp_sandbox(sandbox_id, transport="stdio"), purge=True)
    finally:
        await applier.aclose()
    namespace = await admin.call("GET", f"/api/v1/namespaces/{rendered.namespace}")
    assert namespace["metadata"].get("deletionTimestamp")  # terminating: no controller-manager finishes it


@pytest.mark.kube
@pytest.mark.anyio
async def test_reconciler_account_cannot_reach_beyond_what_it_renders(
    release: Release, admin: Api, as_identity: Callable[[Path], Any], tmp_path: Path
) -> None:
    ns = release.namespace
    kubeconfig = await release.token_kubeconfig(admin, "reconciler", tmp_path)
    escalated = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "not-the-sandbox-role", "namespace": ns},
        "rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}],
    }
    to_admin = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "sandbox-admin", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "sandbox", "namespace": ns}],
    }
    apply_query = {"content_type": "application/apply-patch+yaml", "fieldManager": "t", "force": "true"}
    async with as_identity(kubeconfig) as api:
        assert await api.status_of("GET", f"/api/v1/namespaces/{ns}/pods") == 403
        assert await api.status_of("GET", f"/apis/batch/v1/namespaces/{ns}/jobs") == 403
        assert await api.status_of("GET", "/api/v1/nodes") == 403
        # Escalation prevention still holds for any Role but `sandbox`, and for binding anything else.
        role_path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/not-the-sandbox-role"
        assert await api.status_of("PATCH", role_path, escalated, **apply_query) == 403
        binding_path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/sandbox-admin"
        assert await api.status_of("PATCH", binding_path, to_admin, **apply_query) == 403
        # What it renders, it may write: the Secrets of a sandbox.
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "probe", "namespace": ns}}
        assert await api.status_of("PATCH", f"/api/v1/namespaces/{ns}/secrets/probe", secret, **apply_query) == 200


@pytest.mark.kube
@pytest.mark.anyio
async def test_scaler_account_sets_scale_and_nothing_else(
    release: Release, admin: Api, as_identity: Callable[[Path], Any], tmp_path: Path
) -> None:
    ns = release.namespace
    stateful_set = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "pty-server", "namespace": ns},
        "spec": {
            "replicas": 2,
            "serviceName": "pty-server",
            "selector": {"matchLabels": {"app": "pty-server"}},
            "template": {
                "metadata": {"labels": {"app": "pty-server"}},
                "spec": {"containers": [{"name": "pty-server", "image": "example.com/pty-server:1.0"}]},
            },
        },
    }
    path = f"/apis/apps/v1/namespaces/{ns}/statefulsets/pty-server"
    await admin.call("PATCH", path, stateful_set, content_type="application/apply-patch+yaml", fieldManager="t")
    kubeconfig = await release.token_kubeconfig(admin, "scaler", tmp_path)

    merge = {"content_type": "application/merge-patch+json"}
    async with as_identity(kubeconfig) as api:
        assert (await api.call("GET", f"{path}/scale"))["spec"]["replicas"] == 2
        await api.call("PATCH", f"{path}/scale", {"spec": {"replicas": 0}}, **merge)
        assert await api.status_of("GET", "/apis/apps/v1/statefulsets") == 200  # list across namespaces
        assert await api.status_of("PATCH", path, {"metadata": {"labels": {"x": "y"}}}, **merge) == 403
        assert await api.status_of("DELETE", path) == 403
        assert await api.status_of("GET", f"/api/v1/namespaces/{ns}/secrets") == 403
    assert (await admin.call("GET", path))["spec"]["replicas"] == 0


@pytest.mark.kube
def test_notes_render_for_an_install(helm: Helm, kube_api: KubeTarget, kube_namespace: str) -> None:
    proc = helm.run(
        "install",
        "sbx",
        str(MINIMAL_VALUES.parents[1]),
        "--dry-run=client",
        "--namespace",
        kube_namespace,
        "--values",
        str(MINIMAL_VALUES),
        "--kubeconfig",
        str(kube_api.kubeconfig_path),
    )

    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "sandboxd 0.1.0 is installed as release sbx" in notes
    assert "https://sandbox.omantel.omani.works/sessions/<owner-uid>/" in notes
    assert "no NATS credentials are configured" in notes

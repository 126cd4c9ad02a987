"""The chart's RBAC: least privilege for both processes, proved with the tokens the API server issues them.

Offline: the reconciler's namespaced ClusterRole is exactly the kinds of a rendered sandbox (http MCP transport, so
the Deployment is in it); its cluster-wide one reads no Secret and writes only Namespaces and its own grants; the
scaler's is ``statefulsets/scale`` get and patch. Against the test kube-apiserver (``kube``): every chart manifest
passes a server-side dry run, and the ServiceAccounts, ClusterRoles, bindings and the ValidatingAdmissionPolicy,
installed as the chart renders them, are used for real: the reconciler's Kubernetes applier (configured from the
chart's environment) creates, prunes and purges a sandbox, granting itself and the scaler their access in the
sandbox namespace; it cannot read a Secret in kube-system or in any namespace that is not a sandbox's, nor bind
itself into kube-system; the scaler scales a sandbox's pty-server and nothing in kube-system, lists no
StatefulSet, reads no Secret.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import anyio
import pytest
import yaml
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import SecretStr

from sandboxd.adapters.kubernetes import KubernetesApplier
from sandboxd.adapters.kubernetes.grants import parse_grants
from sandboxd.adapters.kubernetes.resources import CLUSTER_WATCHED, resource_of
from sandboxd.adapters.kubernetes.scaling import StatefulSetScaler
from sandboxd.adapters.kubernetes.tokens import KubeTokenSecrets
from sandboxd.adapters.kubernetes.watching import feeds
from sandboxd.app.appliers import build_applier
from sandboxd.errors import ApplyRejected
from sandboxd.models.spec import SandboxSpec
from sandboxd.render import RenderedSandbox, RenderRequest, rbac, render
from sandboxd.settings import ApplierSettings
from support import kuberaw
from support.bystanders import bystander_statefulset
from support.kube_fixtures import KubeTarget
from support.spine import runtime_settings, spec

from .charts import FULL_VALUES, MINIMAL_VALUES, Helm, by_kind, env_of, one

APPLY_VERBS: Final = {"get", "list", "watch", "create", "patch", "delete"}
PLURALS: Final = {
    "ServiceAccount": "serviceaccounts",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "Service": "services",
    "Deployment": "deployments",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
}
CLUSTER_SCOPED: Final = {
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}
INSTALLED: Final = {"ServiceAccount", *CLUSTER_SCOPED}
#: The token Secret's name (runtime.llmGatewayTokenSecret's default) and the values that run `sandboxd tokens`.
TOKEN_SECRET: Final = "sandbox-llm-gateway-token"
TOKEN_WRITER: Final = {"tokens.existingSecret": "newapi-admin", "tokens.writer": "external"}
GITOPS: Final = {"applier.kind": "gitops", "applier.gitops.repo": "https://git.example.com/r"}


def http_mcp_sandbox(sandbox_id: str = "rbac-check", *, transport: str = "http") -> RenderedSandbox:
    """A sandbox with every kind the renderer has: http MCP (Deployment + Service), repos (PVCs)."""
    request = RenderRequest(
        sandbox_id=sandbox_id,
        spec=SandboxSpec.model_validate(spec(f"{sandbox_id}@rbac.test", sessions=2, repos=["acme/app"])),
    )
    return render(request, runtime_settings(mcp_transport=transport))


def rendered_resources(*, namespaced: bool) -> set[tuple[str, str]]:
    """(API group, resource) of every object the renderer emits, the namespaced kinds or the cluster-scoped ones."""
    out = set()
    for manifest in http_mcp_sandbox().manifests:
        resource = resource_of(manifest)
        if resource.namespaced == namespaced:
            out.add((resource.api_version.rpartition("/")[0], resource.plural))
    return out


def named_grants(role: dict[str, Any]) -> dict[tuple[str, str], tuple[list[str], list[str]]]:
    """(API group, resource) → (resourceNames, verbs), for the rules with resourceNames."""
    return {
        (group, resource): (rule["resourceNames"], rule["verbs"])
        for rule in role["rules"]
        if rule.get("resourceNames")
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


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


def reconciler_roles(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The reconciler's cluster-wide ClusterRole and the one it binds in each sandbox namespace."""
    roles = {r["metadata"]["name"]: r for r in by_kind(objects, "ClusterRole")}
    return roles["sbx-sandboxd-reconciler"], roles["sbx-sandboxd-reconciler-namespaced"]


def test_reconciler_namespaced_role_is_exactly_the_rendered_kinds(helm: Helm) -> None:
    _, namespaced = reconciler_roles(helm.template())
    granted = grants(namespaced)

    assert set(granted) == rendered_resources(namespaced=True)
    for resource, verbs in granted.items():
        assert verbs == APPLY_VERBS, resource


def test_reconciler_cluster_wide_role_reads_no_secret_and_writes_only_namespaces_and_grants(helm: Helm) -> None:
    cluster_wide, _ = reconciler_roles(helm.template())
    granted = grants(cluster_wide)

    assert granted.pop(("", "namespaces")) == APPLY_VERBS
    assert rendered_resources(namespaced=False) == {("", "namespaces")}
    watched = {(r.api_version.rpartition("/")[0], r.plural) for r in CLUSTER_WATCHED if r.namespaced}
    assert granted == {key: {"get", "list", "watch"} for key in watched}  # the watches, and nothing else
    assert ("", "secrets") not in granted
    roles = ["sbx-sandboxd-reconciler-namespaced", "sbx-sandboxd-scaler"]
    assert named_grants(cluster_wide) == {
        ("rbac.authorization.k8s.io", "rolebindings"): (roles, ["get", "create", "patch"]),
        ("rbac.authorization.k8s.io", "clusterroles"): (roles, ["bind"]),
    }


def test_only_the_cluster_wide_roles_are_bound_cluster_wide(helm: Helm) -> None:
    objects = helm.template()
    bound = {b["roleRef"]["name"] for b in by_kind(objects, "ClusterRoleBinding")}

    assert bound == {"sbx-sandboxd-reconciler"}
    grants_env = env_of(one(objects, "Deployment", "reconciler"))["SANDBOXD_KUBE_NAMESPACE_GRANTS"]["value"]
    assert {(g.cluster_role, g.account_namespace, g.account) for g in parse_grants(grants_env)} == {
        ("sbx-sandboxd-reconciler-namespaced", "sandboxd", "sbx-sandboxd-reconciler"),
        ("sbx-sandboxd-scaler", "sandboxd", "sbx-sandboxd-scaler"),
    }


def test_reconciler_may_write_and_bind_only_the_rendered_role(helm: Helm) -> None:
    _, role = reconciler_roles(helm.template())
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

    assert grants(role) == {("apps", "statefulsets/scale"): {"get", "patch"}}
    assert all(not rule.get("resourceNames") for rule in role["rules"])


@pytest.mark.parametrize("kind", ["gitops", "directory"])
def test_appliers_without_a_cluster_get_no_reconciler_role(helm: Helm, kind: str) -> None:
    objects = helm.template(set_values={"applier.kind": kind, "applier.gitops.repo": "https://git.example.com/r"})

    assert [r["metadata"]["name"] for r in by_kind(objects, "ClusterRole")] == ["sbx-sandboxd-scaler"]
    # Nobody writes namespace grants: the scaler's role is bound cluster-wide, the admission policy limits it.
    assert [b["roleRef"]["name"] for b in by_kind(objects, "ClusterRoleBinding")] == ["sbx-sandboxd-scaler"]
    (policy,) = by_kind(objects, "ValidatingAdmissionPolicy")
    assert policy["spec"]["matchConditions"][0]["expression"] == (
        'request.userInfo.username in ["system:serviceaccount:sandboxd:sbx-sandboxd-scaler"]'
    )
    assert "SANDBOXD_KUBE_NAMESPACE_GRANTS" not in env_of(one(objects, "Deployment", "reconciler"))


def test_token_writer_role_is_get_and_patch_of_the_token_secret_only(helm: Helm) -> None:
    role = one(helm.template(set_values=TOKEN_WRITER), "ClusterRole", "tokens")

    assert grants(role) == {}
    assert named_grants(role) == {("", "secrets"): ([TOKEN_SECRET], ["get", "patch"])}
    renamed = one(
        helm.template(set_values={**TOKEN_WRITER, "runtime.llmGatewayTokenSecret": "llm-token"}),
        "ClusterRole",
        "tokens",
    )
    assert named_grants(renamed) == {("", "secrets"): (["llm-token"], ["get", "patch"])}


def test_token_writer_is_granted_per_sandbox_namespace_with_the_kubernetes_applier(helm: Helm) -> None:
    objects = helm.template(set_values=TOKEN_WRITER)

    assert {b["roleRef"]["name"] for b in by_kind(objects, "ClusterRoleBinding")} == {"sbx-sandboxd-reconciler"}
    grants_env = env_of(one(objects, "Deployment", "reconciler"))["SANDBOXD_KUBE_NAMESPACE_GRANTS"]["value"]
    assert ("sbx-sandboxd-tokens", "sandboxd", "sbx-sandboxd-tokens") in {
        (g.cluster_role, g.account_namespace, g.account) for g in parse_grants(grants_env)
    }
    cluster_wide, _ = reconciler_roles(objects)
    roles = ["sbx-sandboxd-reconciler-namespaced", "sbx-sandboxd-scaler", "sbx-sandboxd-tokens"]
    assert named_grants(cluster_wide)[("rbac.authorization.k8s.io", "clusterroles")] == (roles, ["bind"])
    (policy,) = by_kind(objects, "ValidatingAdmissionPolicy")
    assert "system:serviceaccount:sandboxd:sbx-sandboxd-tokens" in policy["spec"]["matchConditions"][0]["expression"]


def test_token_writer_beside_gitops_is_bound_cluster_wide_and_kept_to_sandbox_namespaces(helm: Helm) -> None:
    objects = helm.template(set_values={**TOKEN_WRITER, **GITOPS})

    assert {b["roleRef"]["name"] for b in by_kind(objects, "ClusterRoleBinding")} == {
        "sbx-sandboxd-scaler",
        "sbx-sandboxd-tokens",
    }
    (policy,) = by_kind(objects, "ValidatingAdmissionPolicy")
    assert policy["spec"]["matchConditions"][0]["expression"] == (
        'request.userInfo.username in ["system:serviceaccount:sandboxd:sbx-sandboxd-scaler",'
        '"system:serviceaccount:sandboxd:sbx-sandboxd-tokens"]'
    )


@pytest.mark.parametrize("extra", [{}, TOKEN_WRITER, {**TOKEN_WRITER, **GITOPS}], ids=["default", "tokens", "gitops"])
def test_bindings_name_the_chart_service_accounts(helm: Helm, extra: dict[str, str]) -> None:
    objects = helm.template(namespace="platform", set_values=extra)
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

    async def refusal(self, method: str, path: str, body: Any = None, **kwargs: Any) -> str:
        """The API server's message refusing a call that must be refused with 403."""
        with pytest.raises(ApiException) as refused:
            await self.call(method, path, body, **kwargs)
        assert refused.value.status == 403, refused.value.body
        return str(json.loads(refused.value.body)["message"])

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

    def username(self, component: str) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.account(component)}"

    def applier_settings(self, kubeconfig: Path) -> ApplierSettings:
        """The Kubernetes applier as the chart configures the reconciler (its namespace grants), with ``kubeconfig``."""
        env = env_of(one(self.objects, "Deployment", "reconciler"))
        grants = env["SANDBOXD_KUBE_NAMESPACE_GRANTS"]["value"]
        return ApplierSettings(kind="kubernetes", kubeconfig=str(kubeconfig), kube_namespace_grants=grants)

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


@dataclass
class Installer:
    """Installs the chart's accounts, ClusterRoles, bindings and admission policy for real in ``kube_namespace``."""

    helm: Helm
    kube_api: KubeTarget
    namespace: str
    unique_name: Callable[..., str]
    admin: Api
    as_identity: Callable[[Path], Any]
    folder: Path

    @asynccontextmanager
    async def install(self, set_values: dict[str, Any] | None = None) -> AsyncIterator[Release]:
        """The release, once the admission policy is in force (``policy_in_force``); cluster-scoped objects go after."""
        name = self.unique_name("rel", max_len=24)  # cluster-scoped names are per release: unique per test
        objects = self.helm.template(namespace=self.namespace, release=name, set_values=set_values)
        installed = [o for o in objects if o["kind"] in INSTALLED]
        for obj in installed:
            await self.admin.apply(obj, namespace=self.namespace)
        try:
            installed_release = Release(name, self.namespace, objects, self.kube_api.kubeconfig_path)
            await policy_in_force(installed_release, self.admin, self.as_identity, self.folder)
            yield installed_release
        finally:
            for obj in installed:
                if obj["kind"] in CLUSTER_SCOPED:
                    await self.admin.status_of("DELETE", object_path(obj, None))


@pytest.fixture
def installer(  # noqa: PLR0917 - pytest passes fixtures by name
    helm: Helm,
    kube_api: KubeTarget,
    kube_namespace: str,
    kube_unique_name: Callable[..., str],
    admin: Api,
    as_identity: Callable[[Path], Any],
    tmp_path: Path,
) -> Installer:
    return Installer(helm, kube_api, kube_namespace, kube_unique_name, admin, as_identity, tmp_path)


@pytest.fixture
async def release(installer: Installer) -> AsyncIterator[Release]:
    """The chart with its default values (the Kubernetes applier), installed for real in ``kube_namespace``."""
    async with installer.install() as installed:
        yield installed


async def policy_in_force(release: Release, admin: Api, as_identity: Callable[[Path], Any], folder: Path) -> None:
    """Wait until the admission policy refuses a write RBAC allows outside sandbox namespaces, so no test meets the
    moment before the API server loaded it: the reconciler's grant, or (no Kubernetes applier) the token writer's
    patch of a token Secret, dry-run in the release's namespace, which is not a sandbox's."""
    reconciler_env = env_of(one(release.objects, "Deployment", "reconciler"))
    if "SANDBOXD_KUBE_NAMESPACE_GRANTS" in reconciler_env:
        component = "reconciler"
        (grant, *_) = parse_grants(release.applier_settings(Path()).kube_namespace_grants)
        path, body = grant.path(release.namespace), grant.binding(release.namespace)
    else:
        component = "tokens"
        path = f"/api/v1/namespaces/{release.namespace}/secrets/{TOKEN_SECRET}"
        body = secret(TOKEN_SECRET, release.namespace)
        await admin.call("PATCH", path, body, **APPLY)  # there already: the writer's patch is an update
    kubeconfig = await release.token_kubeconfig(admin, component, folder)
    async with as_identity(kubeconfig) as api:
        with anyio.fail_after(30):
            while (status := await api.status_of("PATCH", path, body, **APPLY, dryRun="All")) != 403:
                assert status in {200, 201}, status  # allowed by RBAC, not refused yet: the policy is still loading
                await anyio.sleep(0.1)


@pytest.fixture
def as_identity(kube_api: KubeTarget) -> Callable[[Path], Any]:
    """``async with as_identity(kubeconfig) as api`` — an ``Api`` authenticating with that kubeconfig."""
    from kubernetes_asyncio import config  # noqa: PLC0415

    @asynccontextmanager
    async def open_api(path: Path) -> AsyncIterator[Api]:
        client = await config.new_client_from_config(config_file=str(path))
        try:
            yield Api(client)
        finally:
            await client.close()

    return open_api


APPLY: Final = {"content_type": "application/apply-patch+yaml", "fieldManager": "t", "force": "true"}


def secret(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}}


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
    release: Release,
    admin: Api,
    as_identity: Callable[[Path], Any],
    tmp_path: Path,
    kube_unique_name: Callable[..., str],
) -> None:
    kubeconfig = await release.token_kubeconfig(admin, "reconciler", tmp_path)
    applier = await build_applier(release.applier_settings(kubeconfig))
    sandbox_id = kube_unique_name("sb", max_len=30)
    rendered = http_mcp_sandbox(sandbox_id)
    ns = rendered.namespace
    try:
        await applier.apply(rendered, generation=1)
        for manifest in rendered.manifests:
            found = await admin.call("GET", resource_of(manifest).item(manifest.name, manifest.namespace))
            assert found["metadata"]["name"] == manifest.name
        async with as_identity(kubeconfig) as api:  # inside its sandbox namespace, through the grant only
            assert await api.status_of("GET", f"/api/v1/namespaces/{ns}/secrets") == 200
            assert await api.status_of("GET", "/api/v1/secrets") == 403
        assert isinstance(applier, KubernetesApplier)
        for feed in feeds():  # every readiness and deletion watch can list across the cluster
            found = await applier.watch_transport.list(
                feed.resource.collection(), label_selector=feed.selector, metadata_only=feed.metadata_only
            )
            assert isinstance(found.get("items"), list), feed.name

        # stdio transport: the MCP Deployment and Service are pruned.
        await applier.apply(http_mcp_sandbox(sandbox_id, transport="stdio"), generation=2)
        deployment = next(m for m in rendered.manifests if m.kind == "Deployment")
        assert await admin.status_of("GET", resource_of(deployment).item(deployment.name, ns)) == 404

        await applier.delete(http_mcp_sandbox(sandbox_id, transport="stdio"), purge=True)
    finally:
        await applier.aclose()
    namespace = await admin.call("GET", f"/api/v1/namespaces/{ns}")
    assert namespace["metadata"].get("deletionTimestamp")  # terminating: no controller-manager finishes it


@pytest.mark.kube
@pytest.mark.anyio
async def test_reconciler_account_reads_no_secret_outside_sandbox_namespaces(
    release: Release, admin: Api, as_identity: Callable[[Path], Any], tmp_path: Path
) -> None:
    ns = release.namespace  # a namespace that is not a sandbox's
    for where in ("kube-system", ns):
        await admin.call(
            "PATCH", f"/api/v1/namespaces/{where}/secrets/{release.name}", secret(release.name, where), **APPLY
        )
    kubeconfig = await release.token_kubeconfig(admin, "reconciler", tmp_path)
    async with as_identity(kubeconfig) as api:
        for where in ("kube-system", ns):
            assert await api.status_of("GET", f"/api/v1/namespaces/{where}/secrets/{release.name}") == 403
            assert await api.status_of("GET", f"/api/v1/namespaces/{where}/secrets") == 403
            assert (
                await api.status_of("PATCH", f"/api/v1/namespaces/{where}/secrets/x", secret("x", where), **APPLY)
                == 403
            )
        assert await api.status_of("GET", "/api/v1/secrets") == 403
        assert await api.status_of("GET", f"/api/v1/namespaces/{ns}/pods") == 403
        assert await api.status_of("GET", "/api/v1/nodes") == 403


@pytest.mark.kube
@pytest.mark.anyio
async def test_a_compromised_reconciler_cannot_bind_itself_outside_sandbox_namespaces(
    release: Release, admin: Api, as_identity: Callable[[Path], Any], tmp_path: Path
) -> None:
    """RBAC lets it write its grant (a RoleBinding of one name) anywhere; the admission policy refuses every
    namespace that is not a sandbox's, and refuses making kube-system look like one."""
    kubeconfig = await release.token_kubeconfig(admin, "reconciler", tmp_path)
    (grant, *_) = parse_grants(release.applier_settings(kubeconfig).kube_namespace_grants)
    escalated = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "not-the-sandbox-role", "namespace": release.namespace},
        "rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}],
    }
    async with as_identity(kubeconfig) as api:
        for where in ("kube-system", release.namespace):  # RBAC allows the name; the policy refuses the place
            refused = await api.refusal("PATCH", grant.path(where), grant.binding(where), **APPLY)
            assert "ValidatingAdmissionPolicy" in refused and "openova.io/managed-by" in refused
        assert await api.status_of("GET", "/api/v1/namespaces/kube-system/secrets") == 403
        adopt = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "kube-system", "labels": {"openova.io/managed-by": "catalyst"}},
        }
        assert "ValidatingAdmissionPolicy" in await api.refusal(
            "PATCH", "/api/v1/namespaces/kube-system", adopt, **APPLY
        )
        elsewhere = f"/api/v1/namespaces/{release.namespace}"
        assert "ValidatingAdmissionPolicy" in await api.refusal("DELETE", elsewhere)
        # Escalation prevention still holds for any Role but `sandbox`.
        role_path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{release.namespace}/roles/not-the-sandbox-role"
        assert await api.status_of("PATCH", role_path, escalated, **APPLY) == 403
    labels = (await admin.call("GET", "/api/v1/namespaces/kube-system"))["metadata"].get("labels") or {}
    assert "openova.io/managed-by" not in labels


@pytest.mark.kube
@pytest.mark.anyio
async def test_scaler_account_scales_a_sandbox_and_nothing_else(
    release: Release,
    admin: Api,
    as_identity: Callable[[Path], Any],
    tmp_path: Path,
    kube_unique_name: Callable[..., str],
) -> None:
    reconciler = await release.token_kubeconfig(admin, "reconciler", tmp_path)
    applier = await build_applier(release.applier_settings(reconciler))
    rendered = http_mcp_sandbox(kube_unique_name("sb", max_len=30))
    try:
        await applier.apply(rendered, generation=1)  # grants the scaler statefulsets/scale in the namespace
    finally:
        await applier.aclose()
    bystander = bystander_statefulset("kube-system", release.name)
    await admin.call("PATCH", f"/apis/apps/v1/namespaces/kube-system/statefulsets/{release.name}", bystander, **APPLY)
    kubeconfig = await release.token_kubeconfig(admin, "scaler", tmp_path)

    scaler = await StatefulSetScaler.connect(ApplierSettings(kind="kubernetes", kubeconfig=str(kubeconfig)))
    try:
        assert await scaler.scale(namespace=rendered.namespace, name="pty-server", replicas=0) == 2
        with pytest.raises(ApplyRejected, match="forbidden"):
            await scaler.scale(namespace="kube-system", name=release.name, replicas=0)
    finally:
        await scaler.aclose()
    sandbox_path = f"/apis/apps/v1/namespaces/{rendered.namespace}/statefulsets/pty-server"
    merge = {"content_type": "application/merge-patch+json"}
    async with as_identity(kubeconfig) as api:
        assert await api.status_of("GET", "/apis/apps/v1/statefulsets") == 403
        assert await api.status_of("GET", f"/apis/apps/v1/namespaces/{rendered.namespace}/statefulsets") == 403
        assert await api.status_of("GET", sandbox_path) == 403
        assert await api.status_of("PATCH", sandbox_path, {"metadata": {"labels": {"x": "y"}}}, **merge) == 403
        assert await api.status_of("DELETE", sandbox_path) == 403
        assert await api.status_of("GET", f"/api/v1/namespaces/{rendered.namespace}/secrets") == 403
        assert await api.status_of("GET", "/api/v1/namespaces/kube-system/secrets") == 403
    assert (await admin.call("GET", sandbox_path))["spec"]["replicas"] == 0
    kube_system = f"/apis/apps/v1/namespaces/kube-system/statefulsets/{release.name}"
    assert (await admin.call("GET", kube_system))["spec"]["replicas"] == 2
    await admin.status_of("DELETE", kube_system)


@pytest.mark.kube
@pytest.mark.anyio
async def test_token_writer_account_patches_token_secrets_in_sandbox_namespaces_only(
    installer: Installer, admin: Api, tmp_path: Path, kube_unique_name: Callable[..., str]
) -> None:
    """Kubernetes applier: the reconciler grants the writer in the namespace it creates; the writer's real adapter
    writes the token there, and its token reads no Secret in kube-system nor any other Secret of the sandbox."""
    async with installer.install(TOKEN_WRITER) as release:
        reconciler = await release.token_kubeconfig(admin, "reconciler", tmp_path)
        applier = await build_applier(release.applier_settings(reconciler))
        rendered = http_mcp_sandbox(kube_unique_name("sb", max_len=30))
        try:
            await applier.apply(rendered, generation=1)  # writes the tokens grant with the others
        finally:
            await applier.aclose()
        await token_writer_can_write(installer, release, rendered.namespace)


@pytest.mark.kube
@pytest.mark.anyio
async def test_token_writer_account_beside_gitops_is_kept_to_labelled_namespaces(
    installer: Installer, admin: Api, tmp_path: Path, kube_unique_name: Callable[..., str]
) -> None:
    """GitOps applier: nothing of sandboxd creates the namespace, so the writer's role is bound cluster-wide; it
    writes the token into a namespace labelled as a sandbox's (made here as Flux would) and nowhere else."""
    async with installer.install({**TOKEN_WRITER, **GITOPS}) as release:
        sandbox_ns = kube_unique_name("sandbox", max_len=40)
        labels = {"openova.io/managed-by": "catalyst"}
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": sandbox_ns, "labels": labels}}
        await admin.call("PATCH", f"/api/v1/namespaces/{sandbox_ns}", namespace, **APPLY)
        await admin.call(
            "PATCH",
            f"/api/v1/namespaces/{sandbox_ns}/secrets/{TOKEN_SECRET}",
            secret(TOKEN_SECRET, sandbox_ns),
            **APPLY,
        )
        kube_system_token = f"/api/v1/namespaces/kube-system/secrets/{TOKEN_SECRET}"
        try:
            await token_writer_can_write(installer, release, sandbox_ns)
            kubeconfig = await release.token_kubeconfig(admin, "tokens", tmp_path)
            async with installer.as_identity(kubeconfig) as api:
                # Creating one is refused by RBAC (no `create`). Patching one that exists: RBAC allows the name
                # anywhere; the admission policy refuses every namespace that is not a sandbox's.
                body = secret(TOKEN_SECRET, "kube-system")
                assert 'cannot create resource "secrets"' in await api.refusal(
                    "PATCH", kube_system_token, body, **APPLY
                )
                await admin.call("PATCH", kube_system_token, body, **APPLY)
                for where in ("kube-system", release.namespace):
                    path = f"/api/v1/namespaces/{where}/secrets/{TOKEN_SECRET}"
                    refused = await api.refusal("PATCH", path, secret(TOKEN_SECRET, where), **APPLY)
                    assert "ValidatingAdmissionPolicy" in refused
        finally:
            await admin.status_of("DELETE", kube_system_token)
            await admin.status_of("DELETE", f"/api/v1/namespaces/{sandbox_ns}")


async def token_writer_can_write(installer: Installer, release: Release, sandbox_ns: str) -> None:
    """The writer's account, through the real ``KubeTokenSecrets``, writes a token into ``sandbox_ns`` and reads
    its revision back; it cannot read, list or write any other Secret, in kube-system or in the sandbox."""
    admin, other = installer.admin, release.name
    for where in ("kube-system", sandbox_ns):
        await admin.call("PATCH", f"/api/v1/namespaces/{where}/secrets/{other}", secret(other, where), **APPLY)
    kubeconfig = await release.token_kubeconfig(admin, "tokens", installer.folder)
    secrets = await KubeTokenSecrets.from_settings(
        ApplierSettings(kind="kubernetes", kubeconfig=str(kubeconfig)),
        secret_name=TOKEN_SECRET,
        key="LLM_GATEWAY_TOKEN",
    )
    try:
        expires = datetime.now(UTC) + timedelta(days=7)
        await secrets.write(sandbox_ns, token=SecretStr("sk-rbac-check"), revision=3, expires_at=expires)
        view = await secrets.read(sandbox_ns)
        assert view is not None and view.revision == 3
    finally:
        await secrets.aclose()
    written = await admin.call("GET", f"/api/v1/namespaces/{sandbox_ns}/secrets/{TOKEN_SECRET}")
    assert "LLM_GATEWAY_TOKEN" in written["data"]
    async with installer.as_identity(kubeconfig) as api:
        for where in ("kube-system", sandbox_ns):
            assert await api.status_of("GET", f"/api/v1/namespaces/{where}/secrets/{other}") == 403
            assert await api.status_of("GET", f"/api/v1/namespaces/{where}/secrets") == 403
            other_path = f"/api/v1/namespaces/{where}/secrets/{other}"
            assert await api.status_of("PATCH", other_path, secret(other, where), **APPLY) == 403
        assert await api.status_of("GET", "/api/v1/secrets") == 403
        assert await api.status_of("DELETE", f"/api/v1/namespaces/{sandbox_ns}/secrets/{TOKEN_SECRET}") == 403
        assert await api.status_of("GET", f"/api/v1/namespaces/{sandbox_ns}/pods") == 403


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

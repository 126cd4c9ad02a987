"""What a rendered sandbox contains: the seed's behaviours and upstream's rendering tests (§9.1, §9.2).

Upstream asserted on template text; these assert on the objects (and on the YAML text where the upstream test
was about the text, e.g. a key being absent). Tests whose upstream version enshrined a defect say which
(G1-G5, G8) and assert the fix instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sandboxd.errors import RenderError
from sandboxd.models import Agent
from sandboxd.render import (
    KUSTOMIZATION,
    Manifest,
    RenderedSandbox,
    RenderRequest,
    Workload,
    files,
    kustomization,
    render,
)
from sandboxd.settings import RuntimeSettings

SettingsFactory = Callable[..., RuntimeSettings]
SpecFactory = Callable[..., Any]
RequestFactory = Callable[..., RenderRequest]

NS = "sandbox-ceo-at-acme-com"
#: A token revision: digits, so the YAML must quote it.
REVISION = "42"
INVALID_NAME = "Bad Name"
UPSTREAM_FILES = [
    "namespace.yaml",
    "resourcequota.yaml",
    "serviceaccount.yaml",
    "role.yaml",
    "rolebinding.yaml",
    "networkpolicy-sandbox-isolation.yaml",  # not upstream's: it renders none (§10.2); ours comes before any pod
    "secret.yaml",
    "secret-llm-gateway-token.yaml",
    "pvc-acme-eventforge.yaml",
    "pvc-acme-internal-tools.yaml",
    "configmap-mcp-config.yaml",
    "statefulset-pty-server.yaml",
    "service-pty-server.yaml",
    "httproute-pty-server.yaml",
]


def manifest(rendered: RenderedSandbox, filename: str) -> Manifest:
    return next(m for m in rendered.manifests if m.filename == filename)


def body(rendered: RenderedSandbox, filename: str) -> dict[str, Any]:
    return dict(manifest(rendered, filename).body)


def text(rendered: RenderedSandbox, filename: str) -> str:
    return files(rendered)[filename].decode()


def pod_spec(rendered: RenderedSandbox, filename: str = "statefulset-pty-server.yaml") -> dict[str, Any]:
    spec: dict[str, Any] = body(rendered, filename)["spec"]["template"]["spec"]
    return spec


def container(rendered: RenderedSandbox, filename: str = "statefulset-pty-server.yaml") -> dict[str, Any]:
    found: dict[str, Any] = pod_spec(rendered, filename)["containers"][0]
    return found


def env(rendered: RenderedSandbox, filename: str = "statefulset-pty-server.yaml") -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container(rendered, filename)["env"]}


def env_names(rendered: RenderedSandbox) -> list[str]:
    return [item["name"] for item in container(rendered)["env"]]


def secret_ref(item: dict[str, Any]) -> tuple[str, str, bool]:
    ref = item["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"], ref["optional"]


Render = Callable[..., RenderedSandbox]


# --- the GitOps folder: files, order, kustomization (upstream HappyPath, Wave8RuntimeShape; G1) -------------


def test_renders_upstream_files_in_kustomization_order(upstream: Render) -> None:
    # Upstream HappyPath counted 13 files with the token Secret absent on non-minting passes (G1); the token
    # Secret is now always rendered, so the same fixture gives 14 files (13 objects + kustomization).
    rendered = upstream()
    assert [m.filename for m in rendered.manifests] == UPSTREAM_FILES
    assert list(files(rendered)) == [*UPSTREAM_FILES, KUSTOMIZATION]
    assert rendered.manifests[0].kind == "Namespace"


def test_kustomization_lists_every_file_including_the_token_secret(upstream: Render) -> None:
    # G1 fixed: upstream's NewAPI_NoMintWhenHealthy expected the token Secret missing from the kustomization.
    rendered = upstream()
    kust = kustomization(rendered)
    assert kust == {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": UPSTREAM_FILES,
    }
    assert text(rendered, KUSTOMIZATION).startswith("apiVersion: kustomize.config.k8s.io/v1beta1\n")
    assert "  - secret-llm-gateway-token.yaml\n" in text(rendered, KUSTOMIZATION)


def test_stdio_transport_renders_no_mcp_deployment(upstream: Render) -> None:
    # Upstream Wave8RuntimeShape: no deployment-mcp.yaml, and the kustomization does not reference it.
    rendered = upstream()
    assert not any(name.endswith(("deployment-mcp.yaml", "service-mcp.yaml")) for name in files(rendered))
    assert "deployment-mcp.yaml" not in text(rendered, KUSTOMIZATION)
    assert not rendered.by_kind("Deployment")


def test_http_transport_adds_mcp_deployment_and_service_before_the_workload(upstream: Render) -> None:
    rendered = upstream(settings={"mcp_transport": "http"})
    names = [m.filename for m in rendered.manifests]
    at = names.index("configmap-mcp-config.yaml")
    assert names[at : at + 4] == [
        "configmap-mcp-config.yaml",
        "deployment-mcp.yaml",
        "service-mcp.yaml",
        "statefulset-pty-server.yaml",
    ]
    assert kustomization(rendered)["resources"] == names


def test_render_is_idempotent_byte_for_byte(upstream: Render) -> None:
    first, second = files(upstream(token_revision=REVISION)), files(upstream(token_revision=REVISION))
    assert first == second
    assert all(isinstance(content, bytes) and content.endswith(b"\n") for content in first.values())


def test_every_namespaced_object_is_in_the_sandbox_namespace(upstream: Render) -> None:
    rendered = upstream(settings={"mcp_transport": "http"})
    assert rendered.namespace == NS
    for m in rendered.manifests[1:]:
        assert m.namespace == NS, m.filename
    assert rendered.manifests[0].namespace is None


def test_common_labels_are_on_every_object(upstream: Render) -> None:
    # The Kubernetes applier prunes by these two labels: an object without them would never be cleaned up.
    for m in upstream(settings={"mcp_transport": "http"}).manifests:
        labels = m.body["metadata"]["labels"]
        assert labels["openova.io/sandbox"] == "emrah", m.filename
        assert labels["openova.io/managed-by"] == "catalyst", m.filename


def test_rendered_sandbox_summary(upstream: Render) -> None:
    rendered = upstream()
    assert rendered.sandbox_id == "emrah"
    assert rendered.owner_uid == "ceo-at-acme-com"
    assert rendered.endpoint == "https://sandbox.omantel.omani.works/sessions/ceo-at-acme-com/"
    assert rendered.replicas == 3


# --- Namespace, RBAC, Secrets, PVCs -------------------------------------------------------------------------


def test_namespace_labels_and_annotations(upstream: Render) -> None:
    meta = body(upstream(), "namespace.yaml")["metadata"]
    assert meta["name"] == NS
    assert meta["labels"] == {
        "openova.io/organization": "acme",
        "openova.io/sovereign": "omantel.omani.works",
        "openova.io/sandbox": "emrah",
        "openova.io/sandbox-id": "emrah",
        "openova.io/sandbox-owner": "ceo-at-acme-com",
        "openova.io/managed-by": "catalyst",
    }
    assert meta["annotations"] == {
        "openova.io/sandbox-owner-email": "ceo@acme.com",
        "openova.io/sandbox-preview-domain": "sb-emrah.rzk7.openova.io",
    }


def test_namespace_has_no_preview_annotation_without_a_preview_domain(upstream: Render) -> None:
    meta = body(upstream(previewDomain=None), "namespace.yaml")["metadata"]
    assert "openova.io/sandbox-preview-domain" not in meta["annotations"]


def test_role_rules_are_upstreams_least_privilege_list(upstream: Render) -> None:
    manage = ["get", "list", "watch", "create", "update", "patch", "delete"]
    read = ["get", "list", "watch"]
    core = ["pods", "pods/log", "pods/exec", "services", "configmaps", "secrets", "persistentvolumeclaims", "events"]
    assert body(upstream(), "role.yaml")["rules"] == [
        {"apiGroups": [""], "resources": core, "verbs": manage},
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets"], "verbs": manage},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": manage},
        {"apiGroups": ["apps.openova.io"], "resources": ["applications"], "verbs": read},
        {"apiGroups": ["catalyst.openova.io"], "resources": ["environments", "blueprints"], "verbs": read},
        {"apiGroups": ["orgs.openova.io"], "resources": ["organizations"], "verbs": read},
    ]


def test_role_binding_binds_the_sandbox_service_account(upstream: Render) -> None:
    binding = body(upstream(), "rolebinding.yaml")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sandbox"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sandbox", "namespace": NS}]
    assert body(upstream(), "serviceaccount.yaml")["metadata"]["name"] == "sandbox"


def test_placeholder_secret_is_upstreams(upstream: Render) -> None:
    secret = body(upstream(), "secret.yaml")
    assert secret["metadata"]["name"] == "sandbox-tokens"
    assert secret["type"] == "Opaque"
    assert secret["stringData"] == {"placeholder": ""}


def test_token_secret_is_the_one_the_pods_read_and_holds_no_value(upstream: Render) -> None:
    # G2 fixed: upstream minted into sandbox-<uid>-newapi-token while pods read sandbox-tokens. G16 fixed:
    # upstream's NewAPI_MintsAndRendersSecret expected `LLM_GATEWAY_TOKEN: "<jwt>"` committed in the file.
    rendered = upstream(settings={"llm_gateway_token_secret": "llm-token", "llm_gateway_token_key": "TOKEN"})
    secret = body(rendered, "secret-llm-gateway-token.yaml")
    assert secret["metadata"]["name"] == "llm-token"
    assert secret["type"] == "Opaque"
    assert "data" not in secret
    assert "stringData" not in secret
    assert secret["metadata"]["labels"]["openova.io/sandbox-owner"] == "ceo-at-acme-com"
    assert "annotations" not in secret["metadata"]  # no restartedAt on the Secret (G3: it restarted nothing)
    variables = env(rendered)
    for name in ("LLM_GATEWAY_TOKEN", "OPENAI_API_KEY", "SANDBOX_TOKEN"):
        assert secret_ref(variables[name]) == ("llm-token", "TOKEN", True), name


def test_token_revision_is_stamped_on_the_pod_template(upstream: Render) -> None:
    # G3 fixed: a rotation changes the pod template, so the StatefulSet rolls its pods.
    key = "openova.io/llm-gateway-token-revision"
    stamped = body(upstream(token_revision=REVISION), "statefulset-pty-server.yaml")
    assert stamped["spec"]["template"]["metadata"]["annotations"][key] == REVISION
    assert key not in body(upstream(), "statefulset-pty-server.yaml")["spec"]["template"]["metadata"]["annotations"]
    assert f'openova.io/llm-gateway-token-revision: "{REVISION}"' in text(
        upstream(token_revision=REVISION), "statefulset-pty-server.yaml"
    )
    assert "restartedAt" not in "".join(c.decode() for c in files(upstream(token_revision=REVISION)).values())


def test_pvc_per_repo_with_a_valid_repo_label(upstream: Render) -> None:
    # G4 fixed: upstream labelled the PVC `openova.io/sandbox-repo: "acme/eventforge"` (invalid label value).
    pvc = body(upstream(), "pvc-acme-eventforge.yaml")
    assert pvc["metadata"]["name"] == "repo-acme-eventforge"
    assert pvc["metadata"]["labels"] == {
        "openova.io/sandbox": "emrah",
        "openova.io/managed-by": "catalyst",
        "openova.io/sandbox-repo": "acme-eventforge",
    }
    assert pvc["metadata"]["annotations"] == {
        "openova.io/sandbox-repo": "acme/eventforge",
        # No GitOps agent prunes the owner's data (a purge deletes the Namespace instead).
        "kustomize.toolkit.fluxcd.io/prune": "disabled",
        "argocd.argoproj.io/sync-options": "Prune=false",
    }
    assert pvc["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}


def test_pvc_size_and_storage_class_come_from_settings(upstream: Render) -> None:
    pvc = body(upstream(settings={"pvc_size": "10Gi", "storage_class": "fast"}), "pvc-acme-eventforge.yaml")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert pvc["spec"]["storageClassName"] == "fast"


def test_pvc_files_are_sorted_by_path(upstream: Render) -> None:
    # Slug order ("a" < "a-b") and file order ("pvc-a-b.yaml" < "pvc-a.yaml") differ; upstream sorts paths.
    rendered = upstream(repos=[{"giteaRepo": "a/b"}, {"giteaRepo": "a/b-c"}])
    assert [m.filename for m in rendered.by_kind("PersistentVolumeClaim")] == ["pvc-a-b-c.yaml", "pvc-a-b.yaml"]
    mounts = [m["mountPath"] for m in container(rendered)["volumeMounts"][:2]]
    assert mounts == ["/workspace/a-b", "/workspace/a-b-c"]  # env, volumes and mounts follow repo order


# --- ResourceQuota and per-pod resources (G5) ---------------------------------------------------------------


def test_each_session_pod_gets_its_share_of_the_quota(upstream: Render) -> None:
    # G5 fixed: upstream gave each of the 3 pods the whole quota (4 CPU, 8Gi) as its limit.
    assert container(upstream())["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1333m", "memory": "2730Mi"},
    }


def test_requests_never_exceed_a_small_share(upstream: Render) -> None:
    rendered = upstream(quota={"cpu": "150m", "memory": "300Mi", "storage": "10Gi", "concurrentSessions": 3})
    assert container(rendered)["resources"] == {
        "requests": {"cpu": "50m", "memory": "100Mi"},
        "limits": {"cpu": "50m", "memory": "100Mi"},
    }


def test_resource_quota_holds_every_replica(upstream: Render) -> None:
    quota = body(upstream(), "resourcequota.yaml")
    assert quota["metadata"]["name"] == "sandbox-quota"
    assert quota["spec"]["hard"] == {
        "requests.cpu": "4",
        "limits.cpu": "4",
        "requests.memory": "8Gi",
        "limits.memory": "8Gi",
        "requests.storage": "50Gi",
        "count/pods": "3",
    }


def test_resource_quota_counts_the_http_mcp_companion(upstream: Render) -> None:
    rendered = upstream(settings={"mcp_transport": "http"})
    assert body(rendered, "resourcequota.yaml")["spec"]["hard"] == {
        "requests.cpu": "4500m",
        "limits.cpu": "4500m",
        "requests.memory": "8704Mi",
        "limits.memory": "8704Mi",
        "requests.storage": "50Gi",
        "count/pods": "4",
    }
    assert container(rendered)["resources"]["limits"] == {"cpu": "1333m", "memory": "2730Mi"}


@pytest.mark.parametrize(
    ("quota", "words"),
    [
        ({"cpu": "20m", "memory": "8Gi", "storage": "50Gi", "concurrentSessions": 3}, "quota.cpu 20m"),
        ({"cpu": "4", "memory": "100Mi", "storage": "50Gi", "concurrentSessions": 2}, "quota.memory 100Mi"),
        ({"cpu": "4", "memory": "8Gi", "storage": "9Gi", "concurrentSessions": 1}, "quota.storage 9Gi"),
    ],
)
def test_a_quota_that_cannot_hold_the_sandbox_is_a_render_error(
    upstream: Render, quota: dict[str, Any], words: str
) -> None:
    with pytest.raises(RenderError, match=words) as caught:
        upstream(quota=quota)
    assert caught.value.reason == "RenderFailed"


# --- StatefulSet pty-server (upstream Wave8RuntimeShape) ----------------------------------------------------


def test_replicas_follow_concurrent_sessions_while_active(upstream: Render) -> None:
    rendered = upstream()
    sts = body(rendered, "statefulset-pty-server.yaml")
    assert sts["spec"]["replicas"] == 3
    assert "  replicas: 3\n" in text(rendered, "statefulset-pty-server.yaml")


@pytest.mark.parametrize("workload", [Workload.IDLE, Workload.SUSPENDED])
def test_replicas_are_zero_while_idle_or_suspended(upstream: Render, workload: Workload) -> None:
    rendered = upstream(workload=workload, settings={"mcp_transport": "http"})
    assert rendered.replicas == 0
    assert body(rendered, "statefulset-pty-server.yaml")["spec"]["replicas"] == 0
    assert body(rendered, "deployment-mcp.yaml")["spec"]["replicas"] == 0
    # The quota still admits every session, so waking up never waits for a re-render of the quota.
    assert body(rendered, "resourcequota.yaml")["spec"]["hard"]["count/pods"] == "4"


def test_statefulset_shape(upstream: Render) -> None:
    sts = body(upstream(), "statefulset-pty-server.yaml")
    assert sts["apiVersion"] == "apps/v1"
    assert sts["metadata"]["name"] == "pty-server"
    assert sts["metadata"]["labels"] == {
        "openova.io/sandbox": "emrah",
        "openova.io/managed-by": "catalyst",
        "openova.io/sandbox-owner": "ceo-at-acme-com",
        "app.kubernetes.io/name": "pty-server",
        "app.kubernetes.io/component": "pty-server",
    }
    spec = sts["spec"]
    assert spec["serviceName"] == "pty-server"
    assert spec["selector"] == {"matchLabels": {"app.kubernetes.io/name": "pty-server", "openova.io/sandbox": "emrah"}}
    assert spec["template"]["metadata"]["labels"] == {
        "app.kubernetes.io/name": "pty-server",
        "app.kubernetes.io/component": "pty-server",
        "openova.io/sandbox": "emrah",
        "openova.io/sandbox-owner": "ceo-at-acme-com",
        "openova.io/managed-by": "catalyst",
    }
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "sandbox"
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["terminationGracePeriodSeconds"] == 30
    main = pod["containers"][0]
    assert main["name"] == "pty-server"
    assert main["image"] == "ghcr.io/openova-io/openova/sandbox-pty-server:test-sha"
    assert main["imagePullPolicy"] == "IfNotPresent"
    assert main["ports"] == [{"name": "http", "containerPort": 7681}]
    assert main["readinessProbe"] == {
        "httpGet": {"path": "/healthz", "port": "http"},
        "initialDelaySeconds": 3,
        "periodSeconds": 5,
    }
    assert main["livenessProbe"] == {
        "httpGet": {"path": "/healthz", "port": "http"},
        "initialDelaySeconds": 10,
        "periodSeconds": 15,
    }
    assert main["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": False,
    }


def test_env_is_in_upstreams_exact_order(upstream: Render) -> None:
    assert env_names(upstream(settings={"ring_buffer_bytes": 1048576})) == [
        "PTY_SERVER_ADDR",
        "SANDBOX_RING_BUFFER_BYTES",
        "SANDBOX_OWNER_UID",
        "SANDBOX_OWNER_EMAIL",
        "ORG_ID",
        "SOVEREIGN_FQDN",
        "NEWAPI_URL",
        "OPENAI_BASE_URL",
        "LLM_GATEWAY_URL",
        "SANDBOX_DEFAULT_AGENT",
        "LLM_GATEWAY_TOKEN",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "SANDBOX_ORG_ID",
        "SANDBOX_SOVEREIGN_FQDN",
        "SANDBOX_ID",
        "SANDBOX_NAMESPACE",
        "SANDBOX_TENANT_ID",
        "SANDBOX_GITEA_BASE_URL",
        "SANDBOX_GITEA_TOKEN",
        "SANDBOX_DOMAIN_API_URL",
        "SANDBOX_MARKETPLACE_API_URL",
        "SANDBOX_STORAGE_S3_ENDPOINT",
        "SANDBOX_STORAGE_S3_REGION",
        "SANDBOX_STORAGE_S3_USE_TLS",
        "SANDBOX_STORAGE_S3_ACCESS_KEY",
        "SANDBOX_STORAGE_S3_SECRET_KEY",
        "KEYCLOAK_ADMIN_URL",
        "KEYCLOAK_PARENT_REALM",
        "KEYCLOAK_ADMIN_TOKEN",
        "SANDBOX_TOKEN",
        "SANDBOX_JWT_SECRET",
        "SANDBOX_REPOS",
        "SOVEREIGN_ENABLE_HOT_STANDBY",
        "SOVEREIGN_PRIMARY_REGION",
        "SOVEREIGN_REPLICA_REGION",
    ]


def test_identity_env_values(upstream: Render) -> None:
    variables = env(upstream())
    values = {name: item.get("value") for name, item in variables.items()}
    assert values["PTY_SERVER_ADDR"] == ":7681"
    assert values["SANDBOX_OWNER_UID"] == "ceo-at-acme-com"
    assert values["SANDBOX_OWNER_EMAIL"] == "ceo@acme.com"
    assert values["ORG_ID"] == values["SANDBOX_ORG_ID"] == values["SANDBOX_TENANT_ID"] == "acme"
    assert values["SOVEREIGN_FQDN"] == values["SANDBOX_SOVEREIGN_FQDN"] == "omantel.omani.works"
    for name in ("NEWAPI_URL", "OPENAI_BASE_URL", "LLM_GATEWAY_URL"):
        assert values[name] == "https://newapi.omantel.omani.works/v1"
    assert values["SANDBOX_ID"] == "emrah"
    assert values["SANDBOX_NAMESPACE"] == NS
    assert values["SANDBOX_REPOS"] == "acme/eventforge,acme/internal-tools"
    assert values["SANDBOX_GITEA_BASE_URL"] == "http://gitea-http.gitea.svc.cluster.local:3000"
    assert values["SANDBOX_DOMAIN_API_URL"] == "http://domain.org-services.svc.cluster.local:8086"
    assert values["SANDBOX_MARKETPLACE_API_URL"] == "http://marketplace-api.marketplace.svc.cluster.local:8082"
    assert values["SANDBOX_STORAGE_S3_ENDPOINT"] == "http://seaweedfs.storage.svc.cluster.local:8333"
    assert values["KEYCLOAK_ADMIN_URL"] == "http://keycloak.keycloak.svc.cluster.local:8080"
    assert secret_ref(variables["SANDBOX_GITEA_TOKEN"]) == ("catalyst-gitea-token", "token", True)
    assert secret_ref(variables["SANDBOX_STORAGE_S3_ACCESS_KEY"]) == ("sandbox-storage-s3", "AWS_ACCESS_KEY_ID", True)
    assert secret_ref(variables["SANDBOX_STORAGE_S3_SECRET_KEY"]) == (
        "sandbox-storage-s3",
        "AWS_SECRET_ACCESS_KEY",
        True,
    )
    assert secret_ref(variables["KEYCLOAK_ADMIN_TOKEN"]) == ("keycloak-admin-token", "token", True)
    assert secret_ref(variables["SANDBOX_JWT_SECRET"]) == ("newapi-bp-newapi-token-signing-key", "SIGNING_KEY", True)


def test_sandbox_id_is_the_sandbox_id_not_the_owner(
    request_factory: RequestFactory, settings_factory: SettingsFactory, spec_factory: SpecFactory
) -> None:
    rendered = render(request_factory(spec_factory(), sandbox_id="sbx-42"), settings_factory())
    assert env(rendered)["SANDBOX_ID"]["value"] == "sbx-42"
    assert rendered.namespace == NS  # the namespace derives from the owner, not the id


def test_optional_platform_secrets_are_omitted_when_not_configured(
    request_factory: RequestFactory, settings_factory: SettingsFactory, spec_factory: SpecFactory
) -> None:
    settings = settings_factory(gitea_token_secret_name="")
    names = env_names(render(request_factory(spec_factory()), settings))
    for absent in (
        "SANDBOX_GITEA_TOKEN",
        "SANDBOX_STORAGE_S3_ACCESS_KEY",
        "SANDBOX_STORAGE_S3_SECRET_KEY",
        "KEYCLOAK_ADMIN_TOKEN",
    ):
        assert absent not in names


def test_repos_empty_gives_empty_sandbox_repos_and_no_volumes(upstream: Render) -> None:
    rendered = upstream(repos=[])
    assert env(rendered)["SANDBOX_REPOS"]["value"] == ""
    assert not rendered.by_kind("PersistentVolumeClaim")
    assert [v["name"] for v in pod_spec(rendered)["volumes"]] == ["mcp-config"]


def test_repo_volumes_and_mounts(upstream: Render) -> None:
    rendered = upstream()
    pod = pod_spec(rendered)
    assert pod["volumes"][:2] == [
        {"name": "repo-acme-eventforge", "persistentVolumeClaim": {"claimName": "repo-acme-eventforge"}},
        {"name": "repo-acme-internal-tools", "persistentVolumeClaim": {"claimName": "repo-acme-internal-tools"}},
    ]
    assert container(rendered)["volumeMounts"][:2] == [
        {"name": "repo-acme-eventforge", "mountPath": "/workspace/acme-eventforge"},
        {"name": "repo-acme-internal-tools", "mountPath": "/workspace/acme-internal-tools"},
    ]


def test_mcp_config_is_mounted_at_the_four_agent_paths(upstream: Render) -> None:
    rendered = upstream()
    mounts = [m for m in container(rendered)["volumeMounts"] if m["name"] == "mcp-config"]
    assert [m["mountPath"] for m in mounts] == [
        "/workspace/.mcp.json",
        "/home/node/.claude.json",
        "/home/node/.qwen/settings.json",
        "/workspace/.cursor/mcp.json",
    ]
    assert all(m["subPath"] == "mcp.json" and m["readOnly"] is True for m in mounts)
    assert pod_spec(rendered)["volumes"][-1] == {
        "name": "mcp-config",
        "configMap": {"name": "sandbox-mcp-config", "items": [{"key": "mcp.json", "path": "mcp.json"}]},
    }


def test_mcp_config_change_rolls_the_pods(upstream: Render) -> None:
    def digest(rendered: RenderedSandbox) -> str:
        sts = body(rendered, "statefulset-pty-server.yaml")
        return str(sts["spec"]["template"]["metadata"]["annotations"]["openova.io/sandbox-mcp-config-hash"])

    assert digest(upstream()) == digest(upstream())
    assert digest(upstream()) != digest(upstream(settings={"mcp_transport": "http"}))


# --- agents: default agent and BYOS (upstream DefaultAgent*, Wave8NoBYOSWhenAgentMissing) -------------------


@pytest.mark.parametrize("agent", list(Agent))
def test_default_agent_is_the_first_catalogue_entry(upstream: Render, agent: Agent) -> None:
    rendered = upstream(agentCatalogue=[agent.value])
    assert env(rendered)["SANDBOX_DEFAULT_AGENT"] == {"name": "SANDBOX_DEFAULT_AGENT", "value": agent.value}
    assert f"- name: SANDBOX_DEFAULT_AGENT\n              value: {agent.value}\n" in text(
        rendered, "statefulset-pty-server.yaml"
    )


def test_default_agent_is_omitted_when_the_catalogue_is_empty(upstream: Render) -> None:
    statefulset = text(upstream(agentCatalogue=[]), "statefulset-pty-server.yaml")
    assert "SANDBOX_DEFAULT_AGENT" not in statefulset
    assert "ANTHROPIC_API_KEY" not in statefulset


def test_qwen_code_is_canonical_and_brings_no_byos(upstream: Render) -> None:
    statefulset = text(upstream(agentCatalogue=["qwen-code"]), "statefulset-pty-server.yaml")
    assert "value: qwen-code" in statefulset
    assert "ANTHROPIC_API_KEY" not in statefulset


def test_byos_is_wired_when_claude_code_is_in_the_catalogue(upstream: Render) -> None:
    variables = env(upstream(agentCatalogue=["cursor-agent", "claude-code"]))
    assert secret_ref(variables["ANTHROPIC_API_KEY"]) == (
        "sandbox-byos-claude-code-ceo-at-acme-com",
        "access_token",
        True,
    )
    assert variables["ANTHROPIC_BASE_URL"] == {"name": "ANTHROPIC_BASE_URL", "value": ""}
    assert variables["SANDBOX_DEFAULT_AGENT"]["value"] == "cursor-agent"


def test_byos_prefix_is_a_setting(upstream: Render) -> None:
    variables = env(upstream(settings={"byos_secret_prefix": "byos"}))
    assert secret_ref(variables["ANTHROPIC_API_KEY"])[0] == "byos-ceo-at-acme-com"


def test_no_byos_without_claude_code(upstream: Render) -> None:
    rendered = upstream(agentCatalogue=["cursor-agent"])
    all_text = "".join(content.decode() for content in files(rendered).values())
    assert "ANTHROPIC_API_KEY" not in all_text
    assert "sandbox-byos-claude-code-ceo-at-acme-com" not in all_text


# --- ring buffer (upstream RingBufferBytes_*) ---------------------------------------------------------------


def test_ring_buffer_is_omitted_when_zero(upstream: Render) -> None:
    assert "SANDBOX_RING_BUFFER_BYTES" not in text(
        upstream(settings={"ring_buffer_bytes": 0}), "statefulset-pty-server.yaml"
    )


def test_ring_buffer_is_emitted_as_a_quoted_string_when_set(upstream: Render) -> None:
    rendered = upstream(settings={"ring_buffer_bytes": 2097152})
    assert env(rendered)["SANDBOX_RING_BUFFER_BYTES"]["value"] == "2097152"
    assert '- name: SANDBOX_RING_BUFFER_BYTES\n              value: "2097152"\n' in text(
        rendered, "statefulset-pty-server.yaml"
    )


# --- idle scaling (G8) ------------------------------------------------------------------------------------


def test_idle_timeout_annotation_defaults_to_the_setting(upstream: Render) -> None:
    annotations = body(upstream(settings={"idle_timeout_minutes": 20}), "statefulset-pty-server.yaml")["metadata"][
        "annotations"
    ]
    assert annotations == {"openova.io/sandbox-idle-timeout-minutes": "20"}


def test_idle_timeout_annotation_takes_the_specs_timeout(upstream: Render) -> None:
    rendered = upstream(idleScaling={"timeoutMinutes": 5})
    annotations = body(rendered, "statefulset-pty-server.yaml")["metadata"]["annotations"]
    assert annotations == {"openova.io/sandbox-idle-timeout-minutes": "5"}
    assert 'openova.io/sandbox-idle-timeout-minutes: "5"' in text(rendered, "statefulset-pty-server.yaml")


def test_idle_opt_out_is_marked_for_the_sweeper(upstream: Render) -> None:
    # Upstream rendered the same annotation but its idle scaler never read it (G8); the sweeper here does.
    rendered = upstream(idleScaling={"enabled": False})
    annotations = body(rendered, "statefulset-pty-server.yaml")["metadata"]["annotations"]
    assert annotations["openova.io/sandbox-idle-scaling-disabled"] == "true"
    assert 'openova.io/sandbox-idle-scaling-disabled: "true"' in text(rendered, "statefulset-pty-server.yaml")
    enabled = body(upstream(idleScaling={"enabled": True}), "statefulset-pty-server.yaml")
    assert "openova.io/sandbox-idle-scaling-disabled" not in enabled["metadata"]["annotations"]


# --- MCP companion ----------------------------------------------------------------------------------------


def test_stdio_mcp_config_launches_the_binary(upstream: Render) -> None:
    rendered = upstream()
    cm = body(rendered, "configmap-mcp-config.yaml")
    assert cm["metadata"]["name"] == "sandbox-mcp-config"
    assert cm["metadata"]["labels"]["app.kubernetes.io/name"] == "sandbox-mcp-config"
    assert cm["metadata"]["labels"]["app.kubernetes.io/component"] == "mcp-config"
    assert cm["metadata"]["annotations"]["openova.io/sandbox-mcp-config-version"] == "v1"
    assert cm["data"]["mcp.json"] == (
        "{\n"
        '  "mcpServers": {\n'
        '    "openova-sandbox-mcp": {\n'
        '      "command": "/usr/local/bin/openova-sandbox-mcp",\n'
        '      "args": [],\n'
        '      "env": {}\n'
        "    }\n"
        "  }\n"
        "}\n"
    )
    # Upstream Wave8RuntimeShape asserted these strings in the file.
    cm_text = text(rendered, "configmap-mcp-config.yaml")
    for expected in ("mcp.json: |", '"mcpServers"', '"openova-sandbox-mcp"', '"args": []', '"env": {}'):
        assert expected in cm_text


def test_http_mcp_config_points_agents_at_the_service(upstream: Render) -> None:
    rendered = upstream(settings={"mcp_transport": "http", "mcp_port": 9090})
    config = body(rendered, "configmap-mcp-config.yaml")["data"]["mcp.json"]
    url = "http://openova-sandbox-mcp.sandbox-ceo-at-acme-com.svc.cluster.local:9090/mcp"
    assert config == (
        '{\n  "mcpServers": {\n    "openova-sandbox-mcp": {\n'
        f'      "type": "http",\n      "url": "{url}"\n    }}\n  }}\n}}\n'
    )


def test_http_mcp_deployment_and_service(upstream: Render) -> None:
    rendered = upstream(settings={"mcp_transport": "http", "mcp_port": 9090}, token_revision=REVISION)
    deployment = body(rendered, "deployment-mcp.yaml")
    assert deployment["metadata"]["name"] == "openova-sandbox-mcp"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/component"] == "mcp-server"
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}  # a surge pod would not fit the quota
    assert spec["template"]["metadata"]["annotations"] == {"openova.io/llm-gateway-token-revision": REVISION}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "sandbox"
    assert "fsGroup" not in pod["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] == 10
    mcp = pod["containers"][0]
    assert mcp["name"] == "mcp"
    assert mcp["image"] == "ghcr.io/openova-io/openova/sandbox-mcp-server:test-sha"
    assert mcp["ports"] == [{"name": "http", "containerPort": 9090}]
    assert mcp["securityContext"]["readOnlyRootFilesystem"] is True
    assert mcp["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    assert mcp["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert mcp["livenessProbe"]["tcpSocket"] == {"port": "http"}
    values = {item["name"]: item.get("value") for item in mcp["env"]}
    assert values["PTY_SERVER_URL"] == "http://pty-server.sandbox-ceo-at-acme-com.svc.cluster.local:7681"
    assert values["SANDBOX_MCP_ADDR"] == ":9090"
    assert values["SANDBOX_ID"] == "emrah"
    assert "SANDBOX_DEFAULT_AGENT" not in values
    assert "ANTHROPIC_API_KEY" not in values
    for name in ("LLM_GATEWAY_TOKEN", "SANDBOX_TOKEN"):
        assert secret_ref(next(i for i in mcp["env"] if i["name"] == name))[0] == "sandbox-llm-gateway-token"
    service = body(rendered, "service-mcp.yaml")
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": {"app.kubernetes.io/name": "openova-sandbox-mcp", "openova.io/sandbox": "emrah"},
        "ports": [{"name": "http", "port": 9090, "targetPort": 9090, "protocol": "TCP"}],
    }
    assert spec["selector"]["matchLabels"] == service["spec"]["selector"]


# --- Service and HTTPRoute --------------------------------------------------------------------------------


def test_service_pty_server(upstream: Render) -> None:
    service = body(upstream(), "service-pty-server.yaml")
    assert service["metadata"]["labels"]["app.kubernetes.io/name"] == "pty-server"
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": {"app.kubernetes.io/name": "pty-server", "openova.io/sandbox": "emrah"},
        "ports": [{"name": "http", "port": 7681, "targetPort": 7681, "protocol": "TCP"}],
    }


def test_httproute_binds_the_sandbox_hostname_and_owner_prefix(upstream: Render) -> None:
    route = body(upstream(), "httproute-pty-server.yaml")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["kind"] == "HTTPRoute"
    assert route["metadata"]["name"] == "pty-server"
    assert route["spec"] == {
        "parentRefs": [{"name": "cilium-gateway", "namespace": "kube-system"}],
        "hostnames": ["sandbox.omantel.omani.works"],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/sessions/ceo-at-acme-com/"}}],
                "filters": [
                    {
                        "type": "URLRewrite",
                        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/sessions/"}},
                    }
                ],
                "backendRefs": [{"name": "pty-server", "port": 7681}],
            }
        ],
    }


def test_httproute_parent_comes_from_settings(upstream: Render) -> None:
    settings = {"gateway_name": "public", "gateway_namespace": "catalyst-system", "gateway_section": "https"}
    route = body(upstream(settings=settings), "httproute-pty-server.yaml")
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "catalyst-system", "sectionName": "https"}]


# --- what cannot be rendered ------------------------------------------------------------------------------


@pytest.mark.parametrize("sandbox_id", ["Not_A_Label", "sbx\n", "", "x" * 64])
def test_an_invalid_sandbox_id_is_a_render_error(
    request_factory: RequestFactory, settings_factory: SettingsFactory, sandbox_id: str
) -> None:
    with pytest.raises(RenderError, match="sandbox id"):
        render(request_factory(sandbox_id=sandbox_id), settings_factory())


def test_an_invalid_token_secret_name_is_a_render_error(
    request_factory: RequestFactory, settings_factory: SettingsFactory
) -> None:
    with pytest.raises(RenderError, match="SANDBOX_LLM_GATEWAY_TOKEN_SECRET"):
        render(request_factory(), settings_factory(llm_gateway_token_secret=INVALID_NAME))


def test_an_unparseable_pvc_size_is_a_render_error(
    request_factory: RequestFactory, settings_factory: SettingsFactory
) -> None:
    with pytest.raises(RenderError, match="SANDBOX_PVC_SIZE"):
        render(request_factory(), settings_factory(pvc_size="5G"))

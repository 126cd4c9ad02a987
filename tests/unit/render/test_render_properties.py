"""Properties of every render: for any valid spec and settings, the objects are valid Kubernetes.

Each rendered object (except the HTTPRoute, a CRD the OpenAPI schemas do not cover) validates against the
Kubernetes 1.34 OpenAPI schema in strict mode (``kubernetes-validate``); every name and label is valid; no two
objects collide; env names are unique per container; every reference (volume, claim, ConfigMap, selector)
resolves inside the render; the session pods fit the ResourceQuota; and the YAML files read back to the
objects. A spec pydantic refuses never reaches the renderer, and a valid spec the quota cannot hold is a
``RenderError``, never anything else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sandboxd import naming
from sandboxd.errors import RenderError
from sandboxd.models import Agent, SandboxSpec, describe
from sandboxd.models.spec import (
    BYTES_PATTERN,
    CPU_PATTERN,
    DOMAIN_PATTERN,
    EMAIL_PATTERN,
    ORG_SLUG_PATTERN,
    REPO_PATTERN,
)
from sandboxd.render import RenderedSandbox, RenderRequest, Workload, files, render
from sandboxd.render.quantities import parse_bytes, parse_cpu
from sandboxd.settings import RuntimeSettings

KUBE_VERSION: Final = "1.34"
DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME: Final = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PORT_NAME: Final = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")
#: Kinds whose names must be DNS-1123 labels rather than subdomains.
LABEL_NAMED: Final = {"Namespace", "Service", "StatefulSet", "Deployment"}

Validate = Callable[[dict[str, Any]], None]


# --- strategies ---------------------------------------------------------------------------------------------


def _matching(pattern: str, max_size: int) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True).filter(lambda text: len(text) <= max_size)


@st.composite
def cpu_amounts(draw: st.DrawFn, sessions: int) -> str:
    """A CPU quota every session can share (≥ 10m each), in any of the spellings the spec accepts."""
    millicores = draw(st.integers(min_value=10 * sessions, max_value=64_000))
    spellings = [f"{millicores}m", f"{millicores // 1000}.{millicores % 1000:03d}"]
    if millicores % 1000 == 0:
        spellings.append(str(millicores // 1000))
    return draw(st.sampled_from(spellings))


@st.composite
def memory_amounts(draw: st.DrawFn, sessions: int) -> str:
    """A memory quota every session can share (≥ 64Mi each): Mi, Ki, exact decimal Gi or whole Gi."""
    mebibytes = draw(st.integers(min_value=64 * sessions, max_value=131_072))
    spellings = [f"{mebibytes}Mi", f"{mebibytes * 1024}Ki", f"{Decimal(mebibytes) / Decimal(1024)}Gi"]
    if mebibytes % 1024 == 0:
        spellings.append(f"{mebibytes // 1024}Gi")
    return draw(st.sampled_from(spellings))


@st.composite
def specs(draw: st.DrawFn, *, quota: st.SearchStrategy[dict[str, Any]] | None = None) -> SandboxSpec:
    sessions = draw(st.integers(min_value=1, max_value=10))
    repos = draw(st.lists(_matching(REPO_PATTERN, 80), max_size=4))
    if quota is None:
        storage_gi = draw(st.integers(min_value=5 * len(repos), max_value=2000))
        quota_data = {
            "cpu": draw(cpu_amounts(sessions)),
            "memory": draw(memory_amounts(sessions)),
            "storage": f"{storage_gi}Gi",
            "concurrentSessions": sessions,
        }
    else:
        quota_data = draw(quota)
    idle = draw(
        st.none()
        | st.fixed_dictionaries(
            {},
            optional={
                "enabled": st.booleans(),
                "timeoutMinutes": st.integers(min_value=1, max_value=10080),
            },
        )
    )
    data: dict[str, Any] = {
        "owner": {
            "email": draw(_matching(EMAIL_PATTERN, 254)),
            "orgRef": {"slug": draw(_matching(ORG_SLUG_PATTERN, 32))},
        },
        "quota": quota_data,
        "repos": [{"giteaRepo": repo} for repo in repos],
        "agentCatalogue": draw(st.lists(st.sampled_from([a.value for a in Agent]), max_size=4)),
        "previewDomain": draw(st.none() | _matching(DOMAIN_PATTERN, 253)),
        "idleScaling": idle,
    }
    try:
        return SandboxSpec.model_validate({k: v for k, v in data.items() if v is not None})
    except ValidationError:
        reject()  # e.g. two generated repos that share a slug, or an email with no DNS-safe characters


setting_overrides = st.fixed_dictionaries(
    {},
    optional={
        "mcp_transport": st.sampled_from(["stdio", "http"]),
        "mcp_port": st.integers(min_value=1, max_value=65535),
        "ring_buffer_bytes": st.integers(min_value=0, max_value=2**31),
        "storage_class": st.none() | _matching(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?", 32),
        "gateway_section": st.none() | st.just("https"),
        "idle_timeout_minutes": st.integers(min_value=1, max_value=10080),
        "gitea_token_secret_name": st.sampled_from(["", "catalyst-gitea-token"]),
        "storage_s3_creds_secret_name": st.sampled_from(["", "sandbox-storage-s3"]),
        "keycloak_admin_token_secret_name": st.sampled_from(["", "keycloak-admin-token"]),
        "sovereign_fqdn": _matching(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?)+", 80),
    },
)

requests = st.builds(
    RenderRequest,
    sandbox_id=_matching(naming.SANDBOX_ID_PATTERN, 63),
    spec=specs(),
    workload=st.sampled_from(list(Workload)),
    token_revision=st.none() | st.from_regex(r"[0-9a-z]{1,12}", fullmatch=True),
)


# --- checks -----------------------------------------------------------------------------------------------


def _check_qualified_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    assert QUALIFIED_NAME.fullmatch(name) and len(name) <= 63, key
    if prefix:
        assert DNS_SUBDOMAIN.fullmatch(prefix) and len(prefix) <= 253, key


def _check_metadata(body: dict[str, Any]) -> None:
    meta = body["metadata"]
    name = meta["name"]
    if body["kind"] in LABEL_NAMED:
        assert DNS_LABEL.fullmatch(name) and len(name) <= 63, name
    else:
        assert DNS_SUBDOMAIN.fullmatch(name) and len(name) <= 253, name
    for key, value in meta["labels"].items():
        _check_qualified_key(key)
        assert naming.LABEL_VALUE_RE.fullmatch(value) and len(value) <= 63, (key, value)
    for key, value in meta.get("annotations", {}).items():
        _check_qualified_key(key)
        assert isinstance(value, str)


def _pod_specs(rendered: RenderedSandbox) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) for every workload."""
    return [
        (dict(m.body), m.body["spec"]["template"])
        for m in rendered.manifests
        if m.kind in ("StatefulSet", "Deployment")
    ]


def _check_pods(rendered: RenderedSandbox) -> None:
    claims = {m.name for m in rendered.by_kind("PersistentVolumeClaim")}
    config_maps = {m.name for m in rendered.by_kind("ConfigMap")}
    accounts = {m.name for m in rendered.by_kind("ServiceAccount")}
    for workload, template in _pod_specs(rendered):
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items()
        pod = template["spec"]
        assert pod["serviceAccountName"] in accounts
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert len(volumes) == len(pod["volumes"])
        for volume in volumes.values():
            assert DNS_LABEL.fullmatch(volume["name"])
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
        for container in pod["containers"]:
            names = [item["name"] for item in container["env"]]
            assert len(names) == len(set(names)), names
            assert all(ENV_NAME.fullmatch(name) for name in names)
            assert all(PORT_NAME.fullmatch(port["name"]) for port in container["ports"])
            mount_paths = [mount["mountPath"] for mount in container.get("volumeMounts", [])]
            assert len(mount_paths) == len(set(mount_paths))
            assert all(mount["name"] in volumes for mount in container.get("volumeMounts", []))


def _check_services(rendered: RenderedSandbox) -> None:
    templates = [template["metadata"]["labels"] for _, template in _pod_specs(rendered)]
    for service in rendered.by_kind("Service"):
        selector = service.body["spec"]["selector"]
        assert sum(selector.items() <= labels.items() for labels in templates) == 1, service.name
    for route in rendered.by_kind("HTTPRoute"):
        for rule in route.body["spec"]["rules"]:
            for backend in rule["backendRefs"]:
                assert any(s.name == backend["name"] for s in rendered.by_kind("Service"))


def _check_quota_fits(rendered: RenderedSandbox, spec: SandboxSpec) -> None:
    """Every pod that may run at once fits the ResourceQuota (upstream G5: only one did)."""
    (quota,) = rendered.by_kind("ResourceQuota")
    hard = quota.body["spec"]["hard"]
    cpu, memory, pods = 0, 0, 0
    for workload, template in _pod_specs(rendered):
        count = spec.quota.concurrent_sessions if workload["kind"] == "StatefulSet" else 1
        limits = template["spec"]["containers"][0]["resources"]["limits"]
        requests = template["spec"]["containers"][0]["resources"]["requests"]
        assert parse_cpu(requests["cpu"]) <= parse_cpu(limits["cpu"])
        assert parse_bytes(requests["memory"]) <= parse_bytes(limits["memory"])
        cpu += count * parse_cpu(limits["cpu"])
        memory += count * parse_bytes(limits["memory"])
        pods += count
    assert cpu <= parse_cpu(hard["limits.cpu"])
    assert memory <= parse_bytes(hard["limits.memory"])
    assert pods <= int(hard["count/pods"])
    storage = sum(
        parse_bytes(c.body["spec"]["resources"]["requests"]["storage"])
        for c in rendered.by_kind("PersistentVolumeClaim")
    )
    assert storage <= parse_bytes(hard["requests.storage"])


# --- properties -------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(request=requests, overrides=setting_overrides)
def test_every_render_is_valid_kubernetes(
    request: RenderRequest,
    overrides: dict[str, Any],
    settings_factory: Callable[..., RuntimeSettings],
    kube_validate: Validate,
) -> None:
    rendered = render(request, settings_factory(**overrides))
    identities = [(m.kind, m.namespace, m.name) for m in rendered.manifests]
    assert len(identities) == len(set(identities)), identities
    assert rendered.manifests[0].kind == "Namespace"
    assert rendered.replicas == (request.spec.quota.concurrent_sessions if request.workload is Workload.ACTIVE else 0)
    for manifest in rendered.manifests:
        body = dict(manifest.body)
        _check_metadata(body)
        if manifest.kind != "HTTPRoute":
            kube_validate(body)
    _check_pods(rendered)
    _check_services(rendered)
    _check_quota_fits(rendered, request.spec)
    written = files(rendered)
    for manifest in rendered.manifests:
        assert yaml.safe_load(written[manifest.filename]) == manifest.body


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(
    spec=specs()
    | specs(
        quota=st.fixed_dictionaries(
            {
                "cpu": _matching(CPU_PATTERN, 12),
                "memory": _matching(BYTES_PATTERN, 12),
                "storage": _matching(BYTES_PATTERN, 12),
                "concurrentSessions": st.integers(min_value=1, max_value=10),
            }
        )
    )
)
def test_any_valid_spec_renders_or_says_which_quota_to_change(
    spec: SandboxSpec, settings_factory: Callable[..., RuntimeSettings]
) -> None:
    try:
        render(RenderRequest(sandbox_id="sbx", spec=spec), settings_factory())
    except RenderError as exc:
        event("refused: " + exc.message.split(" ", 1)[0])
        assert exc.message.startswith("spec.quota."), exc.message
    else:
        event("rendered")


def test_an_invalid_spec_is_a_field_level_error_and_never_reaches_the_renderer() -> None:
    data = {
        "owner": {"email": "not-an-email", "orgRef": {"slug": "acme"}},
        "quota": {"cpu": "1x", "memory": "8Gi", "storage": "50Gi", "concurrentSessions": 0},
        "repos": [{"giteaRepo": "acme/a.b"}, {"giteaRepo": "acme/a_b"}],
    }
    with pytest.raises(ValidationError) as caught:
        SandboxSpec.model_validate(data)
    fields = {tuple(str(p) for p in error["loc"]) for error in caught.value.errors()}
    assert {("owner", "email"), ("quota", "cpu"), ("quota", "concurrentSessions"), ("repos",)} <= fields
    assert "quota.cpu: '1x' is not valid" in describe(caught.value)


def test_the_cached_validator_agrees_with_kubernetes_validate(
    render_case: Callable[[str], RenderedSandbox], kube_validate: Validate
) -> None:
    for case in ("full", "http-mcp"):
        for manifest in render_case(case).manifests:
            if manifest.kind == "HTTPRoute":
                continue
            body = dict(manifest.body)
            assert kubernetes_validate.validate(body, KUBE_VERSION, strict=True) == KUBE_VERSION
            kube_validate(body)
    broken = dict(render_case("full").by_kind("StatefulSet")[0].body)
    broken["spec"] = {**broken["spec"], "replicas": "3"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)
    with pytest.raises(Exception, match="'3' is not of type 'integer'"):
        kube_validate(broken)

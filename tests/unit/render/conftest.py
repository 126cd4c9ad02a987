"""Fixtures for the renderer tests: settings and specs built by keyword, and the named sandboxes.

``runtime_settings(**overrides)`` builds ``RuntimeSettings`` from field names with every field given
explicitly (defaults included), so a ``SANDBOX_*`` variable in the developer's shell cannot change a golden
file. ``sandbox_spec(**overrides)`` builds the upstream test fixture (§9.1: ceo@acme.com, org acme, quota
4/8Gi/50Gi/3, two repos, claude-code + cursor-agent, a preview domain) with top-level fields replaced.
``CASES`` are the three golden sandboxes; the ``render_case`` fixture renders one by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

import jsonschema
import kubernetes_validate.utils as kv_utils
import pytest
import referencing

from sandboxd.models import SandboxSpec
from sandboxd.render import RenderedSandbox, RenderRequest, Workload, render
from sandboxd.settings import RuntimeSettings

PTY_IMAGE: Final = "ghcr.io/openova-io/openova/sandbox-pty-server:test-sha"
MCP_IMAGE: Final = "ghcr.io/openova-io/openova/sandbox-mcp-server:test-sha"
NEWAPI_URL: Final = "https://newapi.omantel.omani.works/v1"
FQDN: Final = "omantel.omani.works"
SANDBOX_ID: Final = "emrah"
OWNER_UID: Final = "ceo-at-acme-com"
NAMESPACE: Final = "sandbox-ceo-at-acme-com"
#: The Kubernetes version the rendered objects are validated against (kubernetes-validate ships its schemas).
KUBE_VERSION: Final = "1.34"
#: The full golden case's token revision (digits, so the YAML must quote it).
ROTATION: Final = "3"


def runtime_settings(**overrides: Any) -> RuntimeSettings:
    """Settings by field name; every unset field takes its declared default, never the environment."""
    values: dict[str, Any] = {
        name: field.default for name, field in RuntimeSettings.model_fields.items() if not field.is_required()
    }
    values.update(pty_server_image=PTY_IMAGE, mcp_image=MCP_IMAGE, newapi_url=NEWAPI_URL, sovereign_fqdn=FQDN)
    values.update(overrides)
    return RuntimeSettings(**values)


def upstream_settings(**overrides: Any) -> RuntimeSettings:
    """The upstream reconciler fixture (§9.1): Gitea, S3 and Keycloak Secrets all wired."""
    values: dict[str, Any] = {
        "gitea_base_url": "http://gitea-http.gitea.svc.cluster.local:3000",
        "storage_s3_creds_secret_name": "sandbox-storage-s3",
        "keycloak_admin_token_secret_name": "keycloak-admin-token",
    }
    values.update(overrides)
    return runtime_settings(**values)


def sandbox_spec(**overrides: Any) -> SandboxSpec:
    """The upstream fixture spec (wire names, camelCase) with top-level fields replaced by ``overrides``."""
    data: dict[str, Any] = {
        "owner": {"email": "ceo@acme.com", "orgRef": {"slug": "acme"}},
        "quota": {"cpu": "4", "memory": "8Gi", "storage": "50Gi", "concurrentSessions": 3},
        "repos": [{"giteaRepo": "acme/eventforge"}, {"giteaRepo": "acme/internal-tools"}],
        "agentCatalogue": ["claude-code", "cursor-agent"],
        "previewDomain": "sb-emrah.rzk7.openova.io",
    }
    data.update(overrides)
    return SandboxSpec.model_validate({k: v for k, v in data.items() if v is not None})


def request(
    spec: SandboxSpec | None = None,
    *,
    sandbox_id: str = SANDBOX_ID,
    workload: Workload = Workload.ACTIVE,
    token_revision: str | None = None,
) -> RenderRequest:
    return RenderRequest(
        sandbox_id=sandbox_id,
        spec=spec if spec is not None else sandbox_spec(),
        workload=workload,
        token_revision=token_revision,
    )


Case = tuple[RenderRequest, RuntimeSettings]


def _minimal_stdio() -> Case:
    spec = sandbox_spec(
        quota={"cpu": "1", "memory": "2Gi", "storage": "10Gi", "concurrentSessions": 1},
        repos=[],
        agentCatalogue=[],
        previewDomain=None,
    )
    return request(spec, sandbox_id="sandbox-dev-at-example-org"), runtime_settings()


def _full() -> Case:
    spec = sandbox_spec(idleScaling={"enabled": False, "timeoutMinutes": 45})
    settings = upstream_settings(
        ring_buffer_bytes=1048576, storage_class="fast-rwo", egress_cidrs="10.96.0.1/32, 192.0.2.0/24"
    )
    return request(spec, token_revision=ROTATION), settings


def _http_mcp() -> Case:
    spec = sandbox_spec(
        owner={"email": "Dev.Lead+sbx@Globex.io", "orgRef": {"slug": "globex"}},
        quota={"cpu": "2", "memory": "3Gi", "storage": "20Gi", "concurrentSessions": 2},
        repos=[{"giteaRepo": "globex/web_app"}],
        agentCatalogue=["qwen-code"],
        previewDomain=None,
    )
    settings = runtime_settings(mcp_transport="http", mcp_port=8080, gateway_section="https")
    return request(spec, sandbox_id="globex-dev-lead"), settings


#: Golden sandboxes: minimal stdio; the upstream fixture with every option on; the http MCP transport.
CASES: Final[dict[str, Callable[[], Case]]] = {
    "minimal-stdio": _minimal_stdio,
    "full": _full,
    "http-mcp": _http_mcp,
}


@pytest.fixture(scope="session")
def render_case() -> Callable[[str], RenderedSandbox]:
    def run(name: str) -> RenderedSandbox:
        req, settings = CASES[name]()
        return render(req, settings)

    return run


@pytest.fixture(scope="session")
def upstream() -> Callable[..., RenderedSandbox]:
    """Render the upstream fixture (§9.1) for sandbox ``emrah``; spec fields and settings overridable::

    upstream(agentCatalogue=["qwen-code"], settings={"ring_buffer_bytes": 2097152}, workload=Workload.IDLE)
    """

    def run(
        *,
        workload: Workload = Workload.ACTIVE,
        token_revision: str | None = None,
        settings: dict[str, Any] | None = None,
        **spec: Any,
    ) -> RenderedSandbox:
        req = request(sandbox_spec(**spec), workload=workload, token_revision=token_revision)
        return render(req, upstream_settings(**(settings or {})))

    return run


@pytest.fixture(scope="session")
def settings_factory() -> Callable[..., RuntimeSettings]:
    return runtime_settings


@pytest.fixture(scope="session")
def spec_factory() -> Callable[..., SandboxSpec]:
    return sandbox_spec


@pytest.fixture(scope="session")
def request_factory() -> Callable[..., RenderRequest]:
    return request


@pytest.fixture(scope="session")
def kube_validate() -> Callable[[dict[str, Any]], None]:
    """``kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)`` with the schemas loaded once.

    The library re-reads its 1.5 MB definitions file on every call (~25 ms); the property tests validate
    hundreds of objects, so this builds the same Draft 2020-12 validator from the same files and caches it
    per kind. ``test_render_properties`` checks it agrees with the library on a rendered sandbox.
    """
    version = [v for v in kv_utils.all_versions() if kv_utils.major_minor(v) <= KUBE_VERSION][-1]
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    definitions = referencing.Resource.from_contents(kv_utils.schema_contents(f"{folder}/_definitions.json", version))
    validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}

    def validate(obj: dict[str, Any]) -> None:
        key = (obj["apiVersion"], obj["kind"])
        if key not in validators:
            group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", obj["apiVersion"])
            schema = kv_utils.schema_contents(f"{folder}/{obj['kind'].lower()}-{group_version}.json", version)
            registry = definitions @ (referencing.Resource.from_contents(schema) @ referencing.Registry())
            validators[key] = jsonschema.Draft202012Validator(schema, registry=registry)
        validators[key].validate(obj)

    return validate

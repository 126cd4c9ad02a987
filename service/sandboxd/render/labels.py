"""Label and annotation keys, and the label sets objects carry.

Every rendered object carries the common set L0 (``openova.io/sandbox: <sandbox id>``,
``openova.io/managed-by: catalyst``): the Kubernetes applier prunes by exactly these two labels, so an object
without them would never be cleaned up. Values always pass through ``naming.label_value`` so they are valid
label values (upstream wrote a raw ``org/repo`` into a label, §10 G4); the sandbox id's and the owner-uid's
are derived once per render, in ``RenderContext``.

What it deliberately does not do: decide which object gets which extra labels (each builder says), or build
``metadata`` (``sandboxd.render.objects``).
"""

from __future__ import annotations

from typing import Final

from sandboxd.render.context import RenderContext

SANDBOX: Final = "openova.io/sandbox"
SANDBOX_ID: Final = "openova.io/sandbox-id"
MANAGED_BY: Final = "openova.io/managed-by"
MANAGER: Final = "catalyst"
OWNER: Final = "openova.io/sandbox-owner"
ORGANIZATION: Final = "openova.io/organization"
SOVEREIGN: Final = "openova.io/sovereign"
REPO: Final = "openova.io/sandbox-repo"
APP_NAME: Final = "app.kubernetes.io/name"
APP_COMPONENT: Final = "app.kubernetes.io/component"

# Annotations.
OWNER_EMAIL: Final = "openova.io/sandbox-owner-email"
PREVIEW_DOMAIN: Final = "openova.io/sandbox-preview-domain"
IDLE_TIMEOUT: Final = "openova.io/sandbox-idle-timeout-minutes"
IDLE_DISABLED: Final = "openova.io/sandbox-idle-scaling-disabled"
TOKEN_REVISION: Final = "openova.io/llm-gateway-token-revision"  # noqa: S105 - a key, not a secret
MCP_CONFIG_VERSION: Final = "openova.io/sandbox-mcp-config-version"
MCP_CONFIG_HASH: Final = "openova.io/sandbox-mcp-config-hash"
MCP_TRANSPORT: Final = "openova.io/sandbox-mcp-transport"


def common(ctx: RenderContext) -> dict[str, str]:
    """L0: on every object; the applier's prune selector."""
    return {SANDBOX: ctx.sandbox_label, MANAGED_BY: MANAGER}


def owned(ctx: RenderContext) -> dict[str, str]:
    """L0 plus the owner label (upstream puts it on the workloads, the token Secret and the MCP ConfigMap)."""
    return {**common(ctx), OWNER: ctx.owner_label}


def app(name: str, component: str) -> dict[str, str]:
    return {APP_NAME: name, APP_COMPONENT: component}


def selector(ctx: RenderContext, name: str) -> dict[str, str]:
    """What a Service or workload selects its pods by (upstream: app name + sandbox)."""
    return {APP_NAME: name, SANDBOX: ctx.sandbox_label}

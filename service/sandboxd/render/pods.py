"""What the session pods and the MCP companion pod share: security contexts, probes and template annotations.

Both run as the non-root user 65532 with the RuntimeDefault seccomp profile, no privilege escalation and no
Linux capabilities. The pod-template annotations are how a change that the pod spec cannot see still rolls
the pods: a rotated LLM-gateway token (``openova.io/llm-gateway-token-revision``; upstream stamped the Secret
instead, which restarts nothing, §10 G3) and a changed ``mcp.json`` (mounted with ``subPath``, which never
refreshes in a running pod).

What it deliberately does not do: choose images, ports, resources or volumes (the workload builders do).
"""

from __future__ import annotations

from typing import Any

from sandboxd.render import components, labels
from sandboxd.render.context import RenderContext


def pod_security(*, fs_group: bool) -> dict[str, Any]:
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": components.RUN_AS,
        "runAsGroup": components.RUN_AS,
    }
    if fs_group:
        context["fsGroup"] = components.RUN_AS
    context["seccompProfile"] = {"type": "RuntimeDefault"}
    return context


def container_security(*, read_only_root: bool) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": read_only_root,
    }


def http_probe(path: str, *, initial_delay: int, period: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": components.HTTP_PORT_NAME},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
    }


def tcp_probe(*, initial_delay: int, period: int) -> dict[str, Any]:
    return {
        "tcpSocket": {"port": components.HTTP_PORT_NAME},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
    }


def template_labels(ctx: RenderContext, *, name: str, component: str) -> dict[str, str]:
    """Upstream's pod labels: app name and component, then the sandbox, owner and manager."""
    return {
        **labels.app(name, component),
        labels.SANDBOX: ctx.sandbox_label,
        labels.OWNER: ctx.owner_label,
        labels.MANAGED_BY: labels.MANAGER,
    }


def template_annotations(ctx: RenderContext, *, mcp_config_hash: str | None) -> dict[str, str]:
    annotations: dict[str, str] = {}
    if mcp_config_hash is not None:
        annotations[labels.MCP_CONFIG_HASH] = mcp_config_hash
    if ctx.request.token_revision:
        annotations[labels.TOKEN_REVISION] = ctx.request.token_revision
    return annotations


def template_metadata(
    ctx: RenderContext, *, name: str, component: str, mcp_config_hash: str | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"labels": template_labels(ctx, name=name, component=component)}
    annotations = template_annotations(ctx, mcp_config_hash=mcp_config_hash)
    if annotations:
        metadata["annotations"] = annotations
    return metadata

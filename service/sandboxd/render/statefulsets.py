"""The session workload: StatefulSet ``pty-server`` (upstream §2.9), one pod per concurrent session.

Metadata, selector, pod labels, security contexts, probes, port and environment follow upstream exactly; the
differences are the fixes:

- ``replicas`` is ``concurrentSessions`` while the sandbox is active and 0 while idle or suspended, so the
  reconciler and the idle scaler always agree on the number;
- each pod's limits are its share of the quota, not the whole quota (G5, ``sandboxd.render.resources``);
- the pod template carries the token revision (G3) and the ``mcp.json`` digest (``sandboxd.render.pods``);
- ``openova.io/sandbox-idle-timeout-minutes`` is the spec's own timeout when it sets one, and
  ``openova.io/sandbox-idle-scaling-disabled: "true"`` marks an opt-out the sweeper honours (G8).

What it deliberately does not do: clone repos (no initContainer, as upstream), or decide idleness (the sweeper
does, and asks for a render with ``Workload.IDLE``).
"""

from __future__ import annotations

from typing import Any

from sandboxd.render import components, environment, labels, pods
from sandboxd.render.context import RenderContext
from sandboxd.render.objects import new_object


def stateful_set(ctx: RenderContext, *, mcp_config_hash: str) -> dict[str, Any]:
    name = components.PTY_SERVER
    annotations = {labels.IDLE_TIMEOUT: str(ctx.idle_timeout_minutes)}
    if not ctx.request.spec.idle_scaling_enabled:
        annotations[labels.IDLE_DISABLED] = "true"
    body = new_object(
        "apps/v1",
        "StatefulSet",
        name=name,
        namespace=ctx.namespace,
        labels={**labels.owned(ctx), **labels.app(name, name)},
        annotations=annotations,
    )
    body["spec"] = {
        "serviceName": name,
        "replicas": ctx.replicas,
        "selector": {"matchLabels": labels.selector(ctx, name)},
        "template": {
            "metadata": pods.template_metadata(ctx, name=name, component=name, mcp_config_hash=mcp_config_hash),
            "spec": {
                "serviceAccountName": components.SERVICE_ACCOUNT,
                "automountServiceAccountToken": True,
                "securityContext": pods.pod_security(fs_group=True),
                "terminationGracePeriodSeconds": 30,
                "containers": [_container(ctx)],
                "volumes": _volumes(ctx),
            },
        },
    }
    return body


def _container(ctx: RenderContext) -> dict[str, Any]:
    return {
        "name": components.PTY_SERVER,
        "image": ctx.settings.pty_server_image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": components.HTTP_PORT_NAME, "containerPort": components.PTY_SERVER_PORT}],
        "env": environment.pty_server_env(ctx),
        "resources": ctx.resources.session.as_dict(),
        "readinessProbe": pods.http_probe("/healthz", initial_delay=3, period=5),
        "livenessProbe": pods.http_probe("/healthz", initial_delay=10, period=15),
        "securityContext": pods.container_security(read_only_root=False),
        "volumeMounts": _mounts(ctx),
    }


def _mounts(ctx: RenderContext) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": repo.claim, "mountPath": f"{components.WORKSPACE}/{repo.slug}"} for repo in ctx.repos
    ]
    mounts += [
        {
            "name": components.MCP_CONFIG_VOLUME,
            "mountPath": path,
            "subPath": components.MCP_CONFIG_KEY,
            "readOnly": True,
        }
        for path in components.MCP_CONFIG_PATHS
    ]
    return mounts


def _volumes(ctx: RenderContext) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        {"name": repo.claim, "persistentVolumeClaim": {"claimName": repo.claim}} for repo in ctx.repos
    ]
    volumes.append(
        {
            "name": components.MCP_CONFIG_VOLUME,
            "configMap": {
                "name": components.MCP_CONFIG_MAP,
                "items": [{"key": components.MCP_CONFIG_KEY, "path": components.MCP_CONFIG_KEY}],
            },
        }
    )
    return volumes

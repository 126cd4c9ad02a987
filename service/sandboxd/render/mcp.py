"""The MCP companion, in the shape ``SANDBOX_MCP_TRANSPORT`` picks.

- ``stdio`` (default, upstream's current shape): only the ConfigMap ``sandbox-mcp-config`` whose ``mcp.json``
  tells each agent CLI to launch ``/usr/local/bin/openova-sandbox-mcp`` as a subprocess; it inherits the
  pty-server's environment. No Deployment: the binary speaks JSON-RPC on stdin and crash-loops as a server.
- ``http`` (the seed's Wave 8 shape): a Deployment + Service ``openova-sandbox-mcp`` serving MCP over HTTP
  beside pty-server, and the same ConfigMap pointing agents at
  ``http://openova-sandbox-mcp.<ns>.svc.cluster.local:<port>/mcp``. The Deployment's size is fixed
  (``resources.MCP_RESOURCES``) and counted into the ResourceQuota; it uses the ``Recreate`` strategy because a
  rolling update would need a surge pod the quota does not hold. It scales to 0 with the sessions.

Either way the ConfigMap is mounted into pty-server at the four paths agents read (``components``).

What it deliberately does not do: configure the MCP server's tools or capabilities (those travel in the
LLM-gateway token), or expose the companion outside the namespace.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from sandboxd.render import components, environment, labels, pods
from sandboxd.render.context import RenderContext
from sandboxd.render.model import Workload
from sandboxd.render.objects import new_object

CONFIG_VERSION = "v1"
#: A small scratch directory, because the companion's root filesystem is read-only.
_TMP_VOLUME = "tmp"
_TMP_SIZE = "64Mi"


def server_url(ctx: RenderContext) -> str:
    return f"http://{components.MCP_SERVER}.{ctx.namespace}.svc.cluster.local:{ctx.settings.mcp_port}/mcp"


def mcp_json(ctx: RenderContext) -> str:
    """The agents' MCP configuration: pretty-printed JSON (2-space indent) ending in a newline."""
    return _mcp_json(server_url(ctx) if ctx.http_mcp else None)


@functools.lru_cache(maxsize=1024)
def _mcp_json(url: str | None) -> str:
    server: dict[str, Any]
    if url is not None:
        server = {"type": "http", "url": url}
    else:
        server = {"command": components.MCP_BINARY, "args": [], "env": {}}
    return json.dumps({"mcpServers": {components.MCP_SERVER: server}}, indent=2) + "\n"


@functools.lru_cache(maxsize=1024)
def config_hash(config: str) -> str:
    """A short digest of ``mcp.json`` for the pod template, so a changed config rolls the pods."""
    return hashlib.sha256(config.encode()).hexdigest()[:16]


def config_map(ctx: RenderContext, config: str) -> dict[str, Any]:
    body = new_object(
        "v1",
        "ConfigMap",
        name=components.MCP_CONFIG_MAP,
        namespace=ctx.namespace,
        labels={
            **labels.owned(ctx),
            **labels.app(components.MCP_CONFIG_MAP, components.MCP_CONFIG_COMPONENT),
        },
        annotations={
            labels.MCP_CONFIG_VERSION: CONFIG_VERSION,
            labels.MCP_TRANSPORT: ctx.settings.mcp_transport,
        },
    )
    body["data"] = {components.MCP_CONFIG_KEY: config}
    return body


def _selector(ctx: RenderContext) -> dict[str, str]:
    return labels.selector(ctx, components.MCP_SERVER)


def deployment(ctx: RenderContext) -> dict[str, Any]:
    resources = ctx.resources.companion
    if resources is None:  # plan_resources sizes the companion whenever the transport is http
        raise AssertionError("the MCP Deployment is rendered only for the http transport")
    body = new_object(
        "apps/v1",
        "Deployment",
        name=components.MCP_SERVER,
        namespace=ctx.namespace,
        labels={**labels.owned(ctx), **labels.app(components.MCP_SERVER, components.MCP_COMPONENT)},
    )
    container = {
        "name": components.MCP_CONTAINER,
        "image": ctx.settings.mcp_image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": components.HTTP_PORT_NAME, "containerPort": ctx.settings.mcp_port}],
        "env": environment.mcp_env(ctx),
        "resources": resources.as_dict(),
        "readinessProbe": pods.tcp_probe(initial_delay=3, period=5),
        "livenessProbe": pods.tcp_probe(initial_delay=10, period=15),
        "securityContext": pods.container_security(read_only_root=True),
        "volumeMounts": [{"name": _TMP_VOLUME, "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir, not the host's /tmp
    }
    body["spec"] = {
        "replicas": 1 if ctx.request.workload is Workload.ACTIVE else 0,
        "strategy": {"type": "Recreate"},
        "selector": {"matchLabels": _selector(ctx)},
        "template": {
            "metadata": pods.template_metadata(ctx, name=components.MCP_SERVER, component=components.MCP_COMPONENT),
            "spec": {
                "serviceAccountName": components.SERVICE_ACCOUNT,
                "automountServiceAccountToken": True,
                "securityContext": pods.pod_security(fs_group=False),
                "terminationGracePeriodSeconds": 10,
                "containers": [container],
                "volumes": [{"name": _TMP_VOLUME, "emptyDir": {"sizeLimit": _TMP_SIZE}}],
            },
        },
    }
    return body


def service(ctx: RenderContext) -> dict[str, Any]:
    body = new_object(
        "v1",
        "Service",
        name=components.MCP_SERVER,
        namespace=ctx.namespace,
        labels={**labels.common(ctx), labels.APP_NAME: components.MCP_SERVER},
    )
    port = ctx.settings.mcp_port
    body["spec"] = {
        "type": "ClusterIP",
        "selector": _selector(ctx),
        "ports": [{"name": components.HTTP_PORT_NAME, "port": port, "targetPort": port, "protocol": "TCP"}],
    }
    return body

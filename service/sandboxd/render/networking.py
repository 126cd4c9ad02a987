"""How sessions are reached: Service ``pty-server`` (§2.10) and HTTPRoute ``pty-server`` (§2.11).

``https://sandbox.<fqdn>/sessions/<owner-uid>/<sid>/attach`` matches the route's ``PathPrefix
/sessions/<owner-uid>/``, is rewritten to ``/sessions/<sid>/attach`` and reaches the ClusterIP Service on
:7681. The parent Gateway (name, namespace, optional listener ``sectionName``) is a setting.

What it deliberately does not do: TLS (the Gateway's listener terminates it), preview routes, or a headless
Service (sessions are not addressed per pod).
"""

from __future__ import annotations

from typing import Any, Final

from sandboxd.naming import route_prefix
from sandboxd.render import components, labels
from sandboxd.render.context import RenderContext
from sandboxd.render.objects import new_object

GATEWAY_API: Final = "gateway.networking.k8s.io/v1"
REWRITTEN_PREFIX: Final = "/sessions/"


def service(ctx: RenderContext) -> dict[str, Any]:
    name = components.PTY_SERVER
    body = new_object(
        "v1",
        "Service",
        name=name,
        namespace=ctx.namespace,
        labels={**labels.common(ctx), labels.APP_NAME: name},
    )
    port = components.PTY_SERVER_PORT
    body["spec"] = {
        "type": "ClusterIP",
        "selector": labels.selector(ctx, name),
        "ports": [{"name": components.HTTP_PORT_NAME, "port": port, "targetPort": port, "protocol": "TCP"}],
    }
    return body


def http_route(ctx: RenderContext) -> dict[str, Any]:
    settings = ctx.settings
    parent: dict[str, Any] = {"name": settings.gateway_name, "namespace": settings.gateway_namespace}
    if settings.gateway_section:
        parent["sectionName"] = settings.gateway_section
    body = new_object(
        GATEWAY_API, "HTTPRoute", name=components.PTY_SERVER, namespace=ctx.namespace, labels=labels.common(ctx)
    )
    body["spec"] = {
        "parentRefs": [parent],
        "hostnames": [ctx.host],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": route_prefix(ctx.owner_uid)}}],
                "filters": [
                    {
                        "type": "URLRewrite",
                        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": REWRITTEN_PREFIX}},
                    }
                ],
                "backendRefs": [{"name": components.PTY_SERVER, "port": components.PTY_SERVER_PORT}],
            }
        ],
    }
    return body

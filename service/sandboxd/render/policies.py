"""The sandbox's network isolation: one NetworkPolicy ``sandbox-isolation`` over every pod of its namespace.

Upstream renders none (§10.2 lists "a Sandbox egress NetworkPolicy to newapi" as design-only), so a session pod
could reach anything the cluster network reaches. This policy selects every pod in the sandbox's namespace
(``podSelector: {}``; the namespace holds this one sandbox) and allows, besides nothing:

- **egress** to the cluster DNS (pods ``k8s-app=kube-dns`` in ``SANDBOX_EGRESS_DNS_NAMESPACE``, port 53 UDP and
  TCP), the LLM gateway's namespace (``SANDBOX_EGRESS_LLM_GATEWAY_NAMESPACE``), the Git server's namespace
  (``SANDBOX_EGRESS_GIT_NAMESPACE``), each of ``SANDBOX_EGRESS_CIDRS``, and, with the http MCP transport, the
  sandbox's own pods (sessions call the companion);
- **ingress** from the gateway's namespace (``SANDBOX_GATEWAY_NAMESPACE``) to the pty-server port, and, with the
  http MCP transport, from the MCP companion to the sessions and from the sessions to the companion's port.

Namespaces are matched by their ``kubernetes.io/metadata.name`` label, which the API server sets on every
Namespace. ``SANDBOX_NETWORK_POLICY=false`` renders no policy (for a cluster whose CNI enforces none, or one
that isolates sandboxes by other means).

What it deliberately does not do: name hosts (a NetworkPolicy matches pods and addresses, not DNS names), or
express a CNI's own identities (Cilium's Gateway proxies traffic as the ``ingress`` entity, which a
namespace selector does not match: docs/security.md says what to add there).
"""

from __future__ import annotations

from typing import Any, Final

from sandboxd.render import components, labels
from sandboxd.render.context import RenderContext
from sandboxd.render.objects import new_object

NAME: Final = "sandbox-isolation"
FILENAME: Final = "networkpolicy-sandbox-isolation.yaml"
NETWORKING_API: Final = "networking.k8s.io/v1"
#: The label the API server puts on every Namespace (Kubernetes 1.21+): its own name.
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
#: The label CoreDNS and kube-dns pods carry in every common distribution.
DNS_POD_LABELS: Final = {"k8s-app": "kube-dns"}
DNS_PORT: Final = 53


def network_policy(ctx: RenderContext) -> dict[str, Any]:
    body = new_object(NETWORKING_API, "NetworkPolicy", name=NAME, namespace=ctx.namespace, labels=labels.common(ctx))
    body["spec"] = {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": _ingress(ctx),
        "egress": _egress(ctx),
    }
    return body


def _namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}


def _pods(name: str) -> dict[str, Any]:
    """Pods of this namespace with ``app.kubernetes.io/name: <name>``."""
    return {"podSelector": {"matchLabels": {labels.APP_NAME: name}}}


def _tcp(port: int) -> dict[str, Any]:
    return {"protocol": "TCP", "port": port}


def _ingress(ctx: RenderContext) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {"from": [_namespace(ctx.settings.gateway_namespace)], "ports": [_tcp(components.PTY_SERVER_PORT)]}
    ]
    if ctx.http_mcp:
        rules += [
            {"from": [_pods(components.MCP_SERVER)], "ports": [_tcp(components.PTY_SERVER_PORT)]},
            {"from": [_pods(components.PTY_SERVER)], "ports": [_tcp(ctx.settings.mcp_port)]},
        ]
    return rules


def _egress(ctx: RenderContext) -> list[dict[str, Any]]:
    settings = ctx.settings
    dns = {**_namespace(settings.egress_dns_namespace), "podSelector": {"matchLabels": dict(DNS_POD_LABELS)}}
    rules: list[dict[str, Any]] = [
        {"to": [dns], "ports": [{"protocol": "UDP", "port": DNS_PORT}, _tcp(DNS_PORT)]},
        {"to": [_namespace(settings.egress_llm_gateway_namespace)]},
        {"to": [_namespace(settings.egress_git_namespace)]},
    ]
    if ctx.http_mcp:
        rules.append({"to": [{"podSelector": {}}]})
    if settings.egress_networks:
        rules.append({"to": [{"ipBlock": {"cidr": cidr}} for cidr in settings.egress_networks]})
    return rules

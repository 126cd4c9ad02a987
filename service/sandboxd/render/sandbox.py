"""``render``: one sandbox's whole runtime, every object in apply order with its GitOps file name.

The order is upstream's kustomization order (§2.1) with the fixes folded in: the Namespace first, then quota,
identity, the NetworkPolicy (unless ``SANDBOX_NETWORK_POLICY=false``; before anything runs), Secrets (the
LLM-gateway token Secret on every pass, G1), one PVC per repo (by file name), the MCP configuration (and, for
the http transport, its Deployment and Service), and last the session workload, its Service and its route::

    namespace.yaml  resourcequota.yaml  serviceaccount.yaml  role.yaml  rolebinding.yaml
    [networkpolicy-sandbox-isolation.yaml]  secret.yaml  secret-llm-gateway-token.yaml  pvc-<slug>.yaml…
    configmap-mcp-config.yaml  [deployment-mcp.yaml  service-mcp.yaml]  statefulset-pty-server.yaml
    service-pty-server.yaml  httproute-pty-server.yaml

What it deliberately does not do: serialise (``sandboxd.render.yamlio``), build the kustomization
(``sandboxd.render.kustomize``), or apply anything. It is pure: the same request and settings always give
equal objects.
"""

from __future__ import annotations

from sandboxd.render import mcp, namespaces, networking, policies, quotas, rbac, secrets, statefulsets, storage
from sandboxd.render.context import derive
from sandboxd.render.model import Manifest, RenderedSandbox, RenderRequest
from sandboxd.settings.runtime import RuntimeSettings


def render(request: RenderRequest, settings: RuntimeSettings) -> RenderedSandbox:
    """Every object of ``request``'s sandbox; ``RenderError`` when the spec cannot become valid objects."""
    ctx = derive(request, settings)
    config = mcp.mcp_json(ctx)
    manifests = [
        Manifest("namespace.yaml", namespaces.namespace(ctx)),
        Manifest("resourcequota.yaml", quotas.resource_quota(ctx)),
        Manifest("serviceaccount.yaml", rbac.service_account(ctx)),
        Manifest("role.yaml", rbac.role(ctx)),
        Manifest("rolebinding.yaml", rbac.role_binding(ctx)),
    ]
    if settings.network_policy:  # before anything runs, so no pod starts unisolated
        manifests.append(Manifest(policies.FILENAME, policies.network_policy(ctx)))
    manifests += [
        Manifest("secret.yaml", secrets.placeholder(ctx)),
        Manifest("secret-llm-gateway-token.yaml", secrets.token_secret(ctx)),
    ]
    claims = [Manifest(storage.filename(repo), storage.claim(ctx, repo)) for repo in ctx.repos]
    manifests += sorted(claims, key=lambda m: m.filename)  # upstream sorts the PVC files by path
    manifests.append(Manifest("configmap-mcp-config.yaml", mcp.config_map(ctx, config)))
    if ctx.http_mcp:
        manifests += [
            Manifest("deployment-mcp.yaml", mcp.deployment(ctx)),
            Manifest("service-mcp.yaml", mcp.service(ctx)),
        ]
    manifests += [
        Manifest(
            "statefulset-pty-server.yaml", statefulsets.stateful_set(ctx, mcp_config_hash=mcp.config_hash(config))
        ),
        Manifest("service-pty-server.yaml", networking.service(ctx)),
        Manifest("httproute-pty-server.yaml", networking.http_route(ctx)),
    ]
    return RenderedSandbox(
        sandbox_id=ctx.sandbox_id,
        owner_uid=ctx.owner_uid,
        namespace=ctx.namespace,
        endpoint=ctx.endpoint,
        replicas=ctx.replicas,
        manifests=tuple(manifests),
    )

"""The session pods' environment, in upstream's exact order (§2.9), and the MCP companion's.

Order matters twice: it is part of the byte-stable output, and later entries may refer to earlier ones. The
list is built from three blocks so the pty-server and the HTTP MCP companion share them::

    pty-server:  PTY_SERVER_ADDR, [SANDBOX_RING_BUFFER_BYTES], identity(agents), platform
    mcp (http):  SANDBOX_MCP_TRANSPORT, SANDBOX_MCP_ADDR, PTY_SERVER_URL, identity(no agents), platform

Every credential is a ``secretKeyRef`` with ``optional: true`` (the pods start before a token writer or the
BYOS flow has filled the Secret); the LLM-gateway token refs name exactly the Secret the renderer emits (G2).

What it deliberately does not do: put any secret value in the environment, or decide which agent runs (the
pty-server spawns ``SANDBOX_DEFAULT_AGENT`` unless a session asks for another).
"""

from __future__ import annotations

from typing import Any

from sandboxd.render import components
from sandboxd.render.context import RenderContext

Env = list[dict[str, Any]]


def value(name: str, text: str) -> dict[str, Any]:
    return {"name": name, "value": text}


def secret_ref(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}


def pty_server_env(ctx: RenderContext) -> Env:
    env = [value("PTY_SERVER_ADDR", f":{components.PTY_SERVER_PORT}")]
    if ctx.settings.ring_buffer_bytes > 0:
        env.append(value("SANDBOX_RING_BUFFER_BYTES", str(ctx.settings.ring_buffer_bytes)))
    return env + identity(ctx, agents=True) + platform(ctx)


def mcp_env(ctx: RenderContext) -> Env:
    pty_url = f"http://{components.PTY_SERVER}.{ctx.namespace}.svc.cluster.local:{components.PTY_SERVER_PORT}"
    return [
        value("SANDBOX_MCP_TRANSPORT", "http"),
        value("SANDBOX_MCP_ADDR", f":{ctx.settings.mcp_port}"),
        value("PTY_SERVER_URL", pty_url),
        *identity(ctx, agents=False),
        *platform(ctx),
    ]


def _token(ctx: RenderContext, name: str) -> dict[str, Any]:
    return secret_ref(name, ctx.settings.llm_gateway_token_secret, ctx.settings.llm_gateway_token_key)


def identity(ctx: RenderContext, *, agents: bool) -> Env:
    """Who the sandbox is and how it reaches the LLM gateway (§2.9 items 3-13)."""
    settings = ctx.settings
    env = [
        value("SANDBOX_OWNER_UID", ctx.owner_uid),
        value("SANDBOX_OWNER_EMAIL", ctx.email),
        value("ORG_ID", ctx.org),
        value("SOVEREIGN_FQDN", settings.sovereign_fqdn),
        value("NEWAPI_URL", settings.newapi_url),
        value("OPENAI_BASE_URL", settings.newapi_url),
        value("LLM_GATEWAY_URL", settings.newapi_url),
    ]
    catalogue = ctx.request.spec.agent_catalogue
    if agents and catalogue:
        env.append(value("SANDBOX_DEFAULT_AGENT", catalogue[0].value))
    env += [_token(ctx, "LLM_GATEWAY_TOKEN"), _token(ctx, "OPENAI_API_KEY")]
    if agents and ctx.byos_secret is not None:
        env += [
            secret_ref("ANTHROPIC_API_KEY", ctx.byos_secret, "access_token"),
            value("ANTHROPIC_BASE_URL", ""),
        ]
    return env


def platform(ctx: RenderContext) -> Env:
    """The platform services the MCP tools call, and the sandbox's identity for them (§2.9 items 14-33)."""
    s = ctx.settings
    env = [
        value("SANDBOX_ORG_ID", ctx.org),
        value("SANDBOX_SOVEREIGN_FQDN", s.sovereign_fqdn),
        value("SANDBOX_ID", ctx.sandbox_id),
        value("SANDBOX_NAMESPACE", ctx.namespace),
        value("SANDBOX_TENANT_ID", ctx.org),
        value("SANDBOX_GITEA_BASE_URL", s.gitea_base_url),
    ]
    if s.gitea_token_secret_name:
        env.append(secret_ref("SANDBOX_GITEA_TOKEN", s.gitea_token_secret_name, s.gitea_token_secret_key))
    env += [
        value("SANDBOX_DOMAIN_API_URL", s.domain_api_url),
        value("SANDBOX_MARKETPLACE_API_URL", s.marketplace_api_url),
        value("SANDBOX_STORAGE_S3_ENDPOINT", s.storage_s3_endpoint),
        value("SANDBOX_STORAGE_S3_REGION", s.storage_s3_region),
        value("SANDBOX_STORAGE_S3_USE_TLS", s.storage_s3_use_tls),
    ]
    if s.storage_s3_creds_secret_name:
        env += [
            secret_ref("SANDBOX_STORAGE_S3_ACCESS_KEY", s.storage_s3_creds_secret_name, s.storage_s3_access_key_key),
            secret_ref("SANDBOX_STORAGE_S3_SECRET_KEY", s.storage_s3_creds_secret_name, s.storage_s3_secret_key_key),
        ]
    env += [
        value("KEYCLOAK_ADMIN_URL", s.keycloak_admin_url),
        value("KEYCLOAK_PARENT_REALM", s.keycloak_parent_realm),
    ]
    if s.keycloak_admin_token_secret_name:
        env.append(
            secret_ref("KEYCLOAK_ADMIN_TOKEN", s.keycloak_admin_token_secret_name, s.keycloak_admin_token_secret_key)
        )
    env += [
        _token(ctx, "SANDBOX_TOKEN"),
        secret_ref("SANDBOX_JWT_SECRET", s.jwt_secret_name, s.jwt_secret_key),
        value("SANDBOX_REPOS", ",".join(repo.repo for repo in ctx.repos)),
        value("SOVEREIGN_ENABLE_HOT_STANDBY", s.hot_standby),
        value("SOVEREIGN_PRIMARY_REGION", s.primary_region),
        value("SOVEREIGN_REPLICA_REGION", s.replica_region),
    ]
    return env

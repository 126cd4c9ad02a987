"""What the renderer needs to know about the environment the sandboxes run in.

Variable names follow upstream (``SANDBOX_*``, ``SOVEREIGN_*``) so the same Helm values drive both.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, field_validator, model_validator

from sandboxd.naming import DNS_LABEL_RE
from sandboxd.settings.fields import Group, env, pinned_image

PinnedImage = Annotated[str, AfterValidator(pinned_image)]

PLACEHOLDER_SECRET = "sandbox-tokens"  # noqa: S105 - the name of a Secret, not a secret


class RuntimeSettings(Group):
    """Inputs of the pure renderer besides the spec (images, URLs, Secret names, knobs)."""

    pty_server_image: PinnedImage = env(
        "SANDBOX_PTY_SERVER_IMAGE", description="pty-server image, pinned by digest or a non-latest tag."
    )
    mcp_image: PinnedImage = env(
        "SANDBOX_MCP_IMAGE", description="MCP companion image (http transport), pinned like the pty-server."
    )
    newapi_url: str = env(
        "SANDBOX_NEWAPI_URL", description="LLM gateway URL given to the pods as NEWAPI_URL/OPENAI_BASE_URL."
    )
    sovereign_fqdn: str = env(
        "SANDBOX_SOVEREIGN_FQDN", description="The Sovereign's DNS name; sandboxes answer on sandbox.<fqdn>."
    )
    llm_gateway_token_secret: str = env(
        "SANDBOX_LLM_GATEWAY_TOKEN_SECRET",
        "sandbox-llm-gateway-token",
        description="Per-sandbox Secret the pods read LLM_GATEWAY_TOKEN from; rendered without a value, the "
        "token writer fills it (fixes upstream G2, where pods read one Secret and the minter wrote another).",
    )
    llm_gateway_token_key: str = env(
        "SANDBOX_LLM_GATEWAY_TOKEN_KEY", "LLM_GATEWAY_TOKEN", description="Key of the token in that Secret."
    )
    byos_secret_prefix: str = env(
        "SANDBOX_BYOS_SECRET_PREFIX",
        "sandbox-byos-claude-code",
        description="BYOS Secret is <prefix>-<owner-uid>, key access_token (claude-code only).",
    )
    idle_timeout_minutes: int = env(
        "SANDBOX_IDLE_TIMEOUT_MINUTES", 30, ge=1, le=10080, description="Minutes without a session before idle."
    )
    ring_buffer_bytes: int = env(
        "SANDBOX_RING_BUFFER_BYTES", 0, ge=0, description="pty-server scrollback bytes; 0 leaves it unset."
    )
    mcp_transport: Literal["stdio", "http"] = env(
        "SANDBOX_MCP_TRANSPORT",
        "stdio",
        description="stdio: agents launch the MCP server (mcp.json ConfigMap only, upstream's fix); "
        "http: a Deployment + Service beside pty-server (the Wave 8 shape).",
    )
    mcp_port: int = env("SANDBOX_MCP_PORT", 8080, ge=1, le=65535, description="MCP HTTP port (http transport).")
    gateway_name: str = env("SANDBOX_GATEWAY_NAME", "cilium-gateway", description="HTTPRoute parentRef name.")
    gateway_namespace: str = env(
        "SANDBOX_GATEWAY_NAMESPACE", "kube-system", description="HTTPRoute parentRef namespace."
    )
    gateway_section: str | None = env(
        "SANDBOX_GATEWAY_SECTION", None, description="HTTPRoute parentRef sectionName; unset attaches to any."
    )
    network_policy: bool = env(
        "SANDBOX_NETWORK_POLICY",
        True,
        description="Render the NetworkPolicy sandbox-isolation: egress only to DNS, the LLM gateway, the Git "
        "server and SANDBOX_EGRESS_CIDRS; ingress only from the gateway and the MCP companion. false renders none.",
    )
    egress_dns_namespace: str = env(
        "SANDBOX_EGRESS_DNS_NAMESPACE",
        "kube-system",
        description="Namespace of the cluster DNS pods (label k8s-app=kube-dns) the sandboxes may query on port 53.",
    )
    egress_llm_gateway_namespace: str = env(
        "SANDBOX_EGRESS_LLM_GATEWAY_NAMESPACE",
        "newapi",
        description="Namespace of the LLM gateway (NewAPI) the sandboxes may reach, on any port.",
    )
    egress_git_namespace: str = env(
        "SANDBOX_EGRESS_GIT_NAMESPACE", "gitea", description="Namespace of the Git server the sandboxes may reach."
    )
    egress_cidrs: str = env(
        "SANDBOX_EGRESS_CIDRS",
        "",
        description="Comma-separated CIDRs the sandboxes may also reach (e.g. the API server, an outside proxy); "
        'empty = none. "0.0.0.0/0" opens egress entirely.',
    )
    pvc_size: str = env("SANDBOX_PVC_SIZE", "5Gi", description="Size of each repo PVC (upstream constant 5Gi).")
    storage_class: str | None = env("SANDBOX_STORAGE_CLASS", None, description="PVC storageClassName; unset = default.")

    # Pass-through knobs for the tools inside the sandbox (upstream SANDBOX_MCP_*).
    gitea_base_url: str = env("SANDBOX_MCP_GITEA_BASE_URL", "", description="Gitea URL the MCP tools use.")
    gitea_token_secret_name: str = env(
        "SANDBOX_MCP_GITEA_TOKEN_SECRET_NAME", "catalyst-gitea-token", description="Secret with the Gitea token."
    )
    gitea_token_secret_key: str = env("SANDBOX_MCP_GITEA_TOKEN_SECRET_KEY", "token", description="Its key.")
    domain_api_url: str = env(
        "SANDBOX_MCP_DOMAIN_API_URL", "http://domain.org-services.svc.cluster.local:8086", description="Domain API."
    )
    marketplace_api_url: str = env(
        "SANDBOX_MCP_MARKETPLACE_API_URL",
        "http://marketplace-api.marketplace.svc.cluster.local:8082",
        description="Marketplace API.",
    )
    storage_s3_endpoint: str = env(
        "SANDBOX_MCP_STORAGE_S3_ENDPOINT", "http://seaweedfs.storage.svc.cluster.local:8333", description="S3."
    )
    storage_s3_region: str = env("SANDBOX_MCP_STORAGE_S3_REGION", "us-east-1", description="S3 region.")
    storage_s3_use_tls: str = env("SANDBOX_MCP_STORAGE_S3_USE_TLS", "false", description="S3 TLS, true/false.")
    storage_s3_creds_secret_name: str = env(
        "SANDBOX_MCP_STORAGE_S3_CREDS_SECRET_NAME", "", description="Secret with S3 keys; empty = no key env."
    )
    storage_s3_access_key_key: str = env(
        "SANDBOX_MCP_STORAGE_S3_ACCESS_KEY_KEY", "AWS_ACCESS_KEY_ID", description="Access key's key."
    )
    storage_s3_secret_key_key: str = env(
        "SANDBOX_MCP_STORAGE_S3_SECRET_KEY_KEY", "AWS_SECRET_ACCESS_KEY", description="Secret key's key."
    )
    keycloak_admin_url: str = env(
        "SANDBOX_MCP_KEYCLOAK_ADMIN_URL", "http://keycloak.keycloak.svc.cluster.local:8080", description="Keycloak."
    )
    keycloak_parent_realm: str = env("SANDBOX_MCP_KEYCLOAK_PARENT_REALM", "master", description="Parent realm.")
    keycloak_admin_token_secret_name: str = env(
        "SANDBOX_MCP_KEYCLOAK_ADMIN_TOKEN_SECRET_NAME", "", description="Secret with a Keycloak admin token."
    )
    keycloak_admin_token_secret_key: str = env(
        "SANDBOX_MCP_KEYCLOAK_ADMIN_TOKEN_SECRET_KEY", "token", description="Its key."
    )
    jwt_secret_name: str = env(
        "SANDBOX_JWT_SECRET_NAME", "newapi-bp-newapi-token-signing-key", description="JWT signing-key Secret."
    )
    jwt_secret_key: str = env("SANDBOX_JWT_SECRET_KEY", "SIGNING_KEY", description="Its key.")
    hot_standby: str = env("SOVEREIGN_ENABLE_HOT_STANDBY", "", description="Passed through to the pods (D31).")
    primary_region: str = env("SOVEREIGN_PRIMARY_REGION", "", description="Passed through to the pods.")
    replica_region: str = env("SOVEREIGN_REPLICA_REGION", "", description="Passed through to the pods.")

    @field_validator("sovereign_fqdn")
    @classmethod
    def _fqdn(cls, value: str) -> str:
        value = value.strip().lower()
        if not value or "." not in value or any(c not in "abcdefghijklmnopqrstuvwxyz0123456789-." for c in value):
            raise ValueError(f"{value!r} is not a DNS name such as omantel.omani.works")
        return value

    @model_validator(mode="after")
    def _token_secret_is_not_the_placeholder(self) -> RuntimeSettings:
        if self.llm_gateway_token_secret == PLACEHOLDER_SECRET:
            raise ValueError(
                f"SANDBOX_LLM_GATEWAY_TOKEN_SECRET must differ from the placeholder Secret {PLACEHOLDER_SECRET!r}"
            )
        return self

    @field_validator("egress_dns_namespace", "egress_llm_gateway_namespace", "egress_git_namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not DNS_LABEL_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a namespace name (a DNS-1123 label)")
        return value

    @field_validator("egress_cidrs")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        networks = []
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            try:
                networks.append(str(ipaddress.ip_network(item, strict=True)))
            except ValueError as exc:
                raise ValueError(f"{item!r} is not a CIDR such as 10.0.0.0/8 ({exc})") from exc
        return ",".join(networks)

    @property
    def egress_networks(self) -> tuple[str, ...]:
        """``SANDBOX_EGRESS_CIDRS`` as a tuple, each one normalised (``10.0.0.0/8``), in the order given."""
        return tuple(self.egress_cidrs.split(",")) if self.egress_cidrs else ()

    @field_validator("newapi_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        try:
            parts = urlsplit(value)
        except ValueError:  # an unbalanced [ in the host
            parts = None
        printable = value.isprintable() and not any(char.isspace() for char in value)
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not printable:
            raise ValueError(f"{value!r} is not an http(s) URL such as https://newapi.example.com/v1")
        return value

"""The LLM-gateway token writer's settings: the NewAPI bridge, where the writer runs, and its schedule.

Variable names follow upstream where it had one (``NEWAPI_BASE_URL``, ``NEWAPI_ADMIN_SECRET``,
``NEWAPI_DEFAULT_CHANNELS``); upstream's fixed 24 h lead and 30 s retry become settings. Minting is on when
``NEWAPI_ADMIN_SECRET`` is set; ``SANDBOXD_TOKEN_WRITER`` says which process does it (``docs/operations.md``).

What it deliberately does not do: read the token Secret's name or key (``RuntimeSettings``: the renderer and the
writer must agree on them, so there is one setting of each).
"""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, field_validator, model_validator

from sandboxd.settings.fields import Group, env

DEFAULT_BRIDGE_URL = "http://newapi-bp-newapi.newapi.svc.cluster.local:8080"


class TokenSettings(Group):
    """Minting, writing and rotating each sandbox's LLM-gateway token."""

    admin_secret: SecretStr | None = env(
        "NEWAPI_ADMIN_SECRET",
        None,
        description="Bearer for the bridge's admin API. Set: tokens are minted; unset: no token writer "
        "(pods get an empty LLM_GATEWAY_TOKEN).",
    )
    base_url: str = env(
        "NEWAPI_BASE_URL",
        DEFAULT_BRIDGE_URL,
        description="NewAPI bridge root; tokens are minted with POST <base>/admin/tokens/sandbox.",
    )
    channels: str = env(
        "NEWAPI_DEFAULT_CHANNELS",
        "qwen",
        description="Comma-separated channels every token may use (allowed_channels); must not be empty when "
        "minting is on.",
    )
    writer: Literal["service", "external"] = env(
        "SANDBOXD_TOKEN_WRITER",
        "service",
        description="service: `sandboxd run` mints and writes the Secrets (Kubernetes applier only); external: "
        "`sandboxd tokens` does (GitOps and directory appliers), and `sandboxd run` only stamps the token "
        "revisions it records on the pod templates.",
    )
    lead_s: float = env(
        "SANDBOXD_TOKEN_ROTATION_LEAD_SECONDS",
        86400.0,
        gt=0,
        description="Rotate a token this long before it expires, s (upstream 24 h, tokens live 7 days).",
    )
    check_interval_s: float = env(
        "SANDBOXD_TOKEN_CHECK_SECONDS",
        30.0,
        gt=0,
        le=3600,
        description="How often the writer looks for sandboxes whose token is due (new, rotating, retrying), s.",
    )
    retry_base_s: float = env(
        "SANDBOXD_TOKEN_RETRY_BASE_SECONDS", 10.0, gt=0, description="First retry after a failed mint, s; doubles."
    )
    retry_cap_s: float = env(
        "SANDBOXD_TOKEN_RETRY_CAP_SECONDS", 1800.0, gt=0, description="Longest wait between mint retries, s."
    )
    timeout_s: float = env(
        "NEWAPI_TIMEOUT_SECONDS", 60.0, gt=0, le=600, description="Per-request timeout to the bridge, s (upstream 60)."
    )
    revoke: bool = env(
        "SANDBOXD_TOKEN_REVOKE",
        True,
        description="Revoke a deleted sandbox's token (DELETE <base>/admin/tokens/sandbox/<sandbox id>); a bridge "
        "that answers 404/405/501 does not support it and the token lapses at its expiry.",
    )
    health_port: int = env(
        "SANDBOXD_TOKENS_HEALTH_PORT",
        8082,
        ge=0,
        le=65535,
        description="/healthz /readyz /metrics of `sandboxd tokens`; 0 = a free port.",
    )
    health_host: str = env(
        "SANDBOXD_TOKENS_HEALTH_HOST",
        "0.0.0.0",  # noqa: S104 - a pod serves its probes and /metrics on every interface
        description="Bind address of that endpoint.",
    )

    @property
    def minting(self) -> bool:
        return self.admin_secret is not None and bool(self.admin_secret.get_secret_value().strip())

    @property
    def channel_list(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.channels.split(",") if c.strip())

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")) or " " in value:
            raise ValueError(f"{value!r} is not an http(s) URL such as {DEFAULT_BRIDGE_URL}")
        return value

    @model_validator(mode="after")
    def _channels_when_minting(self) -> TokenSettings:
        if self.minting and not self.channel_list:
            raise ValueError(
                "NEWAPI_DEFAULT_CHANNELS is empty but NEWAPI_ADMIN_SECRET is set: the bridge refuses a token "
                "with no allowed channels"
            )
        if self.retry_cap_s < self.retry_base_s:
            raise ValueError("SANDBOXD_TOKEN_RETRY_CAP_SECONDS must be at least SANDBOXD_TOKEN_RETRY_BASE_SECONDS")
        return self

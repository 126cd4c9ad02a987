"""The Sandbox spec: what a publisher asks for (upstream CRD ``sandbox.openova.io/v1`` §1.2).

Every upstream field and its validation, plus what upstream left unchecked: repos that collide on one slug
are refused, ``idleScaling`` may carry a per-sandbox timeout, ``expiry`` shuts a sandbox down at a time, and
every string has a length limit (its values end up in names, labels, annotations and environment variables).
Validation only; deriving names is ``sandboxd.naming``'s job.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final

from pydantic import AfterValidator, Field, field_validator, model_validator

from sandboxd import naming
from sandboxd.models.base import Contract, Timestamp, matching

EMAIL_PATTERN: Final = (
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)
ORG_SLUG_PATTERN: Final = r"^[a-z][a-z0-9-]{2,31}$"
CPU_PATTERN: Final = r"^[0-9]+(\.[0-9]+)?m?$"
BYTES_PATTERN: Final = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti)?$"
REPO_PATTERN: Final = r"^[a-z0-9][a-z0-9_.-]*/[A-Za-z0-9._-]+$"
DOMAIN_PATTERN: Final = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$"
PLAN_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{0,62}$"
CAPABILITY_PATTERN: Final = r"^[A-Za-z0-9_.*-]{1,128}$"

# Length limits, checked before the patterns so a refusal never has to quote a long value.
QUANTITY_MAX: Final = 32  # quota.cpu, quota.memory, quota.storage
REPO_MAX: Final = 141  # Gitea: an owner name has at most 40 characters, a repository name at most 100

Email = Annotated[
    str,
    Field(max_length=254, json_schema_extra={"pattern": EMAIL_PATTERN}),
    AfterValidator(matching(EMAIL_PATTERN, "an email address such as ceo@acme.com")),
]
OrgSlug = Annotated[
    str,
    Field(max_length=32, json_schema_extra={"pattern": ORG_SLUG_PATTERN}),
    AfterValidator(matching(ORG_SLUG_PATTERN, "3-32 characters: a lowercase letter, then a-z, 0-9 or '-'")),
]
Cpu = Annotated[
    str,
    Field(max_length=QUANTITY_MAX, json_schema_extra={"pattern": CPU_PATTERN}, examples=["500m", "2"]),
    AfterValidator(matching(CPU_PATTERN, "a CPU amount such as 500m or 2")),
]
Bytes = Annotated[
    str,
    Field(max_length=QUANTITY_MAX, json_schema_extra={"pattern": BYTES_PATTERN}, examples=["8Gi", "512Mi"]),
    AfterValidator(matching(BYTES_PATTERN, "a size such as 512Mi or 8Gi (suffix Ki, Mi, Gi or Ti)")),
]
RepoRef = Annotated[
    str,
    Field(max_length=REPO_MAX, json_schema_extra={"pattern": REPO_PATTERN}, examples=["acme/eventforge"]),
    AfterValidator(matching(REPO_PATTERN, "<org>/<repo>, such as acme/eventforge")),
]
Domain = Annotated[
    str,
    Field(max_length=253, json_schema_extra={"pattern": DOMAIN_PATTERN}),
    AfterValidator(matching(DOMAIN_PATTERN, "a lowercase DNS name such as preview.acme.io")),
]
PlanId = Annotated[
    str,
    Field(
        max_length=63,
        json_schema_extra={"pattern": PLAN_PATTERN},
        examples=["sandbox-free", "sandbox-pro", "sandbox-ent"],
    ),
    AfterValidator(matching(PLAN_PATTERN, "a plan id such as sandbox-pro")),
]
Capability = Annotated[
    str,
    Field(max_length=128, json_schema_extra={"pattern": CAPABILITY_PATTERN}),
    AfterValidator(matching(CAPABILITY_PATTERN, "a capability such as gitea.repo.list or sandbox.db.*")),
]


class Agent(StrEnum):
    """Agent CLIs bundled into the pty-server image (upstream enum plus ``sovereign-shell``)."""

    AIDER = "aider"
    CLAUDE_CODE = "claude-code"
    CURSOR_AGENT = "cursor-agent"
    LITTLE_CODER = "little-coder"
    OPENCODE = "opencode"
    QWEN_CODE = "qwen-code"
    SOVEREIGN_SHELL = "sovereign-shell"


class OrgRef(Contract):
    slug: OrgSlug = Field(description="The parent Organization slug; the Gitea org and ORG_ID.")


class Owner(Contract):
    email: Email = Field(description="The owner's email; the owner-uid and namespace derive from it.")
    org_ref: OrgRef


class Quota(Contract):
    cpu: Cpu = Field(description="CPU the session pods share (an MCP companion over HTTP gets its own, on top).")
    memory: Bytes = Field(
        description="Memory the session pods share (an MCP companion over HTTP gets its own, on top)."
    )
    storage: Bytes = Field(description="Total storage requests allowed in the namespace.")
    concurrent_sessions: int = Field(ge=1, le=10, description="Session pods (StatefulSet replicas), 1-10.")


class Repo(Contract):
    gitea_repo: RepoRef = Field(description="<org>/<repo>; one PVC mounted at /workspace/<slug>.")


class IdleScaling(Contract):
    enabled: bool = Field(default=True, description="false opts the sandbox out of idle scale-down.")
    timeout_minutes: int | None = Field(
        default=None, ge=1, le=10080, description="Idle timeout for this sandbox; default from settings."
    )


class ExpiryPolicy(StrEnum):
    """What an expired sandbox keeps: a retained delete (the data) or a purge (nothing)."""

    RETAIN = "retain"
    PURGE = "purge"


class Expiry(Contract):
    """When the sandbox shuts down for good: the sweeper publishes its delete at ``at``.

    An absolute time rather than a lifetime: it is what the publisher knows, and no redelivery, replay or
    re-create can move it. ``sandboxctl create --expires-in 8h`` turns a lifetime into one. An update may move
    it (extend or shorten); removing ``expiry`` cancels it.
    """

    at: Timestamp = Field(description="Shutdown time (RFC 3339, UTC); the sandbox is deleted at or after it.")
    policy: ExpiryPolicy = Field(
        default=ExpiryPolicy.RETAIN,
        description="retain: a retained delete (namespace and PVCs kept); purge: everything is deleted.",
    )


class SandboxSpec(Contract):
    """Level-based: every create/update event carries the whole spec."""

    owner: Owner
    quota: Quota
    repos: list[Repo] = Field(default_factory=list, max_length=32)
    agent_catalogue: list[Agent] = Field(default_factory=list, max_length=16)
    preview_domain: Domain | None = None
    plan_id: PlanId | None = None
    capabilities: list[Capability] = Field(default_factory=list, max_length=128)
    idle_scaling: IdleScaling | None = None
    expiry: Expiry | None = Field(default=None, description="Shut the sandbox down at a time; none = never.")

    @field_validator("repos")
    @classmethod
    def _distinct_repo_slugs(cls, repos: list[Repo]) -> list[Repo]:
        naming.repo_slugs([r.gitea_repo for r in repos])  # raises naming both repos on a collision
        return repos

    @model_validator(mode="after")
    def _owner_uid_derivable(self) -> SandboxSpec:
        naming.owner_uid(self.owner.email)
        return self

    @property
    def idle_scaling_enabled(self) -> bool:
        return self.idle_scaling is None or self.idle_scaling.enabled

    @property
    def wants_claude_code(self) -> bool:
        return Agent.CLAUDE_CODE in self.agent_catalogue

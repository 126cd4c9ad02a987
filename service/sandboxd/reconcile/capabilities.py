"""The MCP capabilities a sandbox's LLM-gateway token carries: the spec's own list, else its plan's (upstream §8.3).

- ``spec.capabilities`` with any non-blank entry wins, exactly as given and in order;
- otherwise the plan's list: ``sandbox-free`` ⊂ ``sandbox-pro`` ⊂ ``sandbox-ent``; an unknown or missing plan
  gets the Free list (least privilege).

Every call returns a fresh tuple. What it deliberately does not do: decide quotas per plan (the tenant bridge
does), or check a capability against the bridge (the bridge signs what it is given).
"""

from __future__ import annotations

from typing import Final

from sandboxd.models.spec import SandboxSpec

FREE: Final = "sandbox-free"
PRO: Final = "sandbox-pro"
ENT: Final = "sandbox-ent"

_FREE_CAPS: Final = (
    "gitea.repo.list",
    "gitea.repo.get",
    "gitea.pr.list",
    "gitea.pr.get",
    "k8s.read.get",
    "k8s.read.list",
    "sandbox.session.*",
    "rag.search",
    "skills.list",
    "skills.get",
)
_PRO_EXTRA: Final = (
    "sandbox.db.*",
    "sandbox.storage.*",
    "sandbox.preview.*",
    "sandbox.auth.*",
    "sandbox.secrets.*",
    "marketplace.*",
    "flux.status",
)
_ENT_EXTRA: Final = (
    "sandbox.deploy.staging",
    "sandbox.deploy.production",
    "sandbox.deploy.status",
    "sandbox.deploy.rollback",
    "sandbox.stripe.*",
    "flux.reconcile",
    "flux.suspend",
    "flux.resume",
    "gitea.pr.create",
    "gitea.pr.merge",
    "gitea.issue.*",
)
PLANS: Final[dict[str, tuple[str, ...]]] = {
    FREE: _FREE_CAPS,
    PRO: _FREE_CAPS + _PRO_EXTRA,
    ENT: _FREE_CAPS + _PRO_EXTRA + _ENT_EXTRA,
}


def for_plan(plan_id: str | None) -> tuple[str, ...]:
    """The plan's capabilities; Free for an unknown or missing plan."""
    return PLANS.get((plan_id or "").strip(), _FREE_CAPS)


def resolve(spec: SandboxSpec) -> tuple[str, ...]:
    """What the token is minted with: the spec's non-blank capabilities in order, else the plan's."""
    own = tuple(c.strip() for c in spec.capabilities if c.strip())
    return own or for_plan(spec.plan_id)

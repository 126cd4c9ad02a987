"""Everything the object builders share, derived once from the request and the settings.

``RenderContext`` answers "what is this sandbox called, where does it live, which repos and agents does it
have" so each builder module stays a plain function of one context. Deriving it is where a spec that cannot be
rendered is caught: an owner-uid or repo slug that does not derive, a hostname or Secret name that would be
invalid, a quota that cannot be split across the session pods (``sandboxd.render.resources``).

What it deliberately does not do: build Kubernetes objects, or re-validate what pydantic already checked on
the spec and settings (patterns, ranges, distinct repo slugs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sandboxd import naming
from sandboxd.errors import RenderError
from sandboxd.models.spec import Agent
from sandboxd.render import workload
from sandboxd.render.model import RenderRequest
from sandboxd.render.resources import ResourcePlan, plan_resources
from sandboxd.settings.runtime import RuntimeSettings

#: A DNS-1123 subdomain (Secret names, hostnames): dot-separated labels, at most 253 characters.
_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SUBDOMAIN_MAX: Final = 253


@dataclass(frozen=True, slots=True)
class RepoMount:
    """One repo: its PVC (``repo-<slug>``) mounted at ``/workspace/<slug>``."""

    repo: str
    slug: str
    claim: str


@dataclass(frozen=True, slots=True)
class RenderContext:
    request: RenderRequest
    settings: RuntimeSettings
    sandbox_id: str
    owner_uid: str
    #: The sandbox id and owner-uid as label values (``naming.label_value``), derived once: nearly every
    #: object carries one or both.
    sandbox_label: str
    owner_label: str
    email: str
    org: str
    namespace: str
    host: str
    endpoint: str
    #: Sorted by repo (upstream order for env, volumes and mounts).
    repos: tuple[RepoMount, ...]
    replicas: int
    resources: ResourcePlan
    byos_secret: str | None

    @property
    def http_mcp(self) -> bool:
        return self.settings.mcp_transport == "http"

    @property
    def idle_timeout_minutes(self) -> int:
        return workload.idle_timeout_minutes(self.request.spec, default_minutes=self.settings.idle_timeout_minutes)


def derive(request: RenderRequest, settings: RuntimeSettings) -> RenderContext:
    """The shared facts of one render; ``RenderError`` when the spec cannot become valid objects."""
    spec = request.spec
    if not naming.DNS_LABEL_RE.fullmatch(request.sandbox_id):  # fullmatch: "$" alone lets "x\n" through
        raise RenderError(f"sandbox id {request.sandbox_id!r} is not a DNS-1123 label")
    try:
        uid = naming.owner_uid(spec.owner.email).value
        slugs = naming.repo_slugs([r.gitea_repo for r in spec.repos])
    except ValueError as exc:
        raise RenderError(str(exc)) from exc
    host = f"sandbox.{settings.sovereign_fqdn}"
    _require_subdomain(host, what="the sandbox hostname (sandbox.<SANDBOX_SOVEREIGN_FQDN>)")
    _require_subdomain(settings.llm_gateway_token_secret, what="SANDBOX_LLM_GATEWAY_TOKEN_SECRET")
    byos = f"{settings.byos_secret_prefix}-{uid}" if Agent.CLAUDE_CODE in spec.agent_catalogue else None
    if byos is not None:
        _require_subdomain(byos, what="the BYOS Secret name (<SANDBOX_BYOS_SECRET_PREFIX>-<owner-uid>)")
    repos = tuple(RepoMount(repo=repo, slug=slug, claim=naming.pvc_name(slug)) for slug, repo in slugs.items())
    resources = plan_resources(spec.quota, repo_count=len(repos), settings=settings)
    return RenderContext(
        request=request,
        settings=settings,
        sandbox_id=request.sandbox_id,
        owner_uid=uid,
        sandbox_label=naming.label_value(request.sandbox_id),
        owner_label=naming.label_value(uid),
        email=spec.owner.email,
        org=spec.owner.org_ref.slug,
        namespace=naming.namespace_for(uid),
        host=host,
        endpoint=f"https://{host}{naming.route_prefix(uid)}",
        repos=repos,
        replicas=workload.replicas(spec, request.workload),
        resources=resources,
        byos_secret=byos,
    )


def _require_subdomain(name: str, *, what: str) -> None:
    if len(name) > _SUBDOMAIN_MAX or not _SUBDOMAIN.fullmatch(name):
        raise RenderError(f"{what} {name!r} is not a valid DNS-1123 subdomain")

"""The sandbox quota, split so that every session pod fits (fixes upstream G5).

Upstream gave each of the ``concurrentSessions`` pty-server pods the *whole* quota as its limit while the
namespace's ResourceQuota was also the whole quota, so only one pod could ever start. Here each session pod
gets an equal share::

    limits.cpu    = quota.cpu    / concurrentSessions   (whole millicores, rounded down)
    limits.memory = quota.memory / concurrentSessions   (whole Mi, rounded down)
    requests      = min(100m, limit), min(256Mi, limit)

and the ResourceQuota's hard limits are the quota itself, plus the MCP companion's fixed limits and one more
pod when it runs as a Deployment (``mcp_transport: http``), so the companion never eats the sessions' share.
A share below 10m CPU or 64Mi memory, or repo PVCs that together exceed ``quota.storage``, cannot run and is a
``RenderError`` that says which number to change.

What it deliberately does not do: build objects (``sandboxd.render.quotas`` writes the ResourceQuota from this
plan), or consult the spec's ``planId`` (plans are the publisher's business; the quota arrives decided).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Final

from sandboxd.errors import RenderError
from sandboxd.models.spec import Quota
from sandboxd.render.quantities import (
    MI,
    format_bytes,
    format_cpu,
    parse_bytes,
    parse_cpu,
    share_bytes,
)
from sandboxd.settings.runtime import RuntimeSettings

#: Below these a pty-server (and the agent CLI it spawns) cannot do useful work.
MIN_SESSION_CPU_M: Final = 10
MIN_SESSION_MEMORY: Final = 64 * MI
#: Each session pod asks for at most this much; the rest of its share is burst room up to its limit.
SESSION_CPU_REQUEST_M: Final = 100
SESSION_MEMORY_REQUEST: Final = 256 * MI


@dataclass(frozen=True, slots=True)
class Resources:
    """Requests and limits of one container, in millicores and bytes."""

    cpu_request_m: int
    memory_request: int
    cpu_limit_m: int
    memory_limit: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": {"cpu": format_cpu(self.cpu_request_m), "memory": format_bytes(self.memory_request)},
            "limits": {"cpu": format_cpu(self.cpu_limit_m), "memory": format_bytes(self.memory_limit)},
        }


#: The MCP companion Deployment's fixed size (upstream Wave 8 values: 50m/128Mi requests, 500m/512Mi limits).
MCP_RESOURCES: Final = Resources(cpu_request_m=50, memory_request=128 * MI, cpu_limit_m=500, memory_limit=512 * MI)


@dataclass(frozen=True, slots=True)
class ResourcePlan:
    """How the quota is spent: one share per session pod, the companion, and the namespace's hard limits."""

    session: Resources
    companion: Resources | None
    pods: int
    cpu_m: int
    memory: int
    storage: int
    pvc_size: int

    def hard(self) -> dict[str, str]:
        cpu, memory = format_cpu(self.cpu_m), format_bytes(self.memory)
        return {
            "requests.cpu": cpu,
            "limits.cpu": cpu,
            "requests.memory": memory,
            "limits.memory": memory,
            "requests.storage": format_bytes(self.storage),
            "count/pods": str(self.pods),
        }


@functools.lru_cache(maxsize=256)
def plan_resources(quota: Quota, *, repo_count: int, settings: RuntimeSettings) -> ResourcePlan:
    """Split ``quota`` across the session pods; ``RenderError`` when a share or the storage cannot fit.

    Memoised: sandboxes share a handful of quota plans and one settings object, every input is frozen and
    so is the plan, so one plan serves every sandbox that asks for the same split. A refusal is not cached.
    """
    sessions = quota.concurrent_sessions
    try:
        cpu_m = parse_cpu(quota.cpu)
        memory = parse_bytes(quota.memory)
        storage = parse_bytes(quota.storage)
    except ValueError as exc:
        raise RenderError(f"spec.quota: {exc}") from exc
    try:
        pvc_size = parse_bytes(settings.pvc_size)
    except ValueError as exc:
        raise RenderError(f"SANDBOX_PVC_SIZE: {exc}") from exc

    cpu_share = cpu_m // sessions
    memory_share = share_bytes(memory, sessions)
    if cpu_share < MIN_SESSION_CPU_M:
        raise RenderError(
            f"spec.quota.cpu {quota.cpu} split across {sessions} session pods gives {cpu_share}m each, "
            f"below the {MIN_SESSION_CPU_M}m a session needs; raise quota.cpu or lower concurrentSessions"
        )
    if memory_share < MIN_SESSION_MEMORY:
        raise RenderError(
            f"spec.quota.memory {quota.memory} split across {sessions} session pods gives "
            f"{format_bytes(memory_share)} each, below the {format_bytes(MIN_SESSION_MEMORY)} a session needs; "
            f"raise quota.memory or lower concurrentSessions"
        )
    if repo_count * pvc_size > storage:
        raise RenderError(
            f"spec.quota.storage {quota.storage} cannot hold {repo_count} repo volumes of "
            f"{format_bytes(pvc_size)} each ({format_bytes(repo_count * pvc_size)}); raise quota.storage or "
            f"list fewer repos"
        )

    session = Resources(
        cpu_request_m=min(SESSION_CPU_REQUEST_M, cpu_share),
        memory_request=min(SESSION_MEMORY_REQUEST, memory_share),
        cpu_limit_m=cpu_share,
        memory_limit=memory_share,
    )
    companion = MCP_RESOURCES if settings.mcp_transport == "http" else None
    extra_cpu, extra_memory = (companion.cpu_limit_m, companion.memory_limit) if companion else (0, 0)
    return ResourcePlan(
        session=session,
        companion=companion,
        pods=sessions + (1 if companion else 0),
        cpu_m=cpu_m + extra_cpu,
        memory=memory + extra_memory,
        storage=storage,
        pvc_size=pvc_size,
    )

"""What a retained delete keeps: the rule the GitOps and directory appliers share.

Deleting a sandbox without purging removes what runs (workloads, Service, route, Secrets, config) and keeps what
holds or governs the owner's data: the namespace, its quota, the repository volumes and the RBAC the volumes'
users need, so a later create finds the data where it left it.

Pure: it picks manifests, it does not write anything. The Kubernetes applier keeps its own "never prune PVCs"
rule because it deletes live objects rather than files.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from sandboxd.render.model import RenderedSandbox

#: Kinds a retained delete keeps. Everything else of the sandbox is removed.
RETAINED_KINDS: Final = frozenset(
    {"Namespace", "ResourceQuota", "PersistentVolumeClaim", "ServiceAccount", "Role", "RoleBinding"}
)


def retained(rendered: RenderedSandbox) -> RenderedSandbox:
    """``rendered`` with only the kinds a retained delete keeps, in the same order, and no session replicas."""
    kept = tuple(m for m in rendered.manifests if m.kind in RETAINED_KINDS)
    return dataclasses.replace(rendered, manifests=kept, replicas=0)

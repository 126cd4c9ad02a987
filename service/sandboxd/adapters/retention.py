"""What a retained delete keeps and removes: the rule every applier shares (a sandbox keeps its data, not access).

Deleting a sandbox without purging keeps what holds the owner's data: the Namespace, its ResourceQuota and the
repository volumes (PersistentVolumeClaims), so a later create finds the data where it left it. It removes
everything else of the sandbox, in three steps (``removal_step``):

1. what runs: the session StatefulSet and the MCP companion Deployment, so no pod uses what goes next;
2. how it is reached and configured: the Services, the HTTPRoute, the NetworkPolicy, the ConfigMap and the
   Secrets (the token);
3. access: the ServiceAccount, the Role (``pods/exec``, ``secrets``, …) and its RoleBinding. A retained sandbox
   grants nobody anything; a later create renders them again.

A purge removes everything, the volumes and the Namespace included.

Pure: it picks manifests and kinds, it does not write or delete anything. The file appliers write
``retained(rendered)`` (plus the claims their folder already holds, ``sandboxd.render.retained``); the
Kubernetes applier deletes the live objects of each step in order.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from sandboxd.render.model import RenderedSandbox
from sandboxd.render.retained import retire_claims

#: Kinds a retained delete keeps. Everything else of the sandbox is removed.
RETAINED_KINDS: Final = frozenset({"Namespace", "ResourceQuota", "PersistentVolumeClaim"})
#: Kinds that run the sandbox's pods: removed first.
WORKLOAD_KINDS: Final = frozenset({"StatefulSet", "Deployment"})
#: Kinds that grant access inside the namespace: removed last, once nothing runs as them.
ACCESS_KINDS: Final = frozenset({"ServiceAccount", "Role", "RoleBinding"})
#: How many steps ``removal_step`` numbers (0 up to, not including, this).
REMOVAL_STEPS: Final = 3


def removal_step(kind: str) -> int | None:
    """The step (0, 1, 2) in which a retained delete removes ``kind``; None for a kind it keeps."""
    if kind in RETAINED_KINDS:
        return None
    if kind in WORKLOAD_KINDS:
        return 0
    return 2 if kind in ACCESS_KINDS else 1


def retained(rendered: RenderedSandbox) -> RenderedSandbox:
    """``rendered`` with only the kinds a retained delete keeps, in the same order, its claims marked retained,
    and no session replicas."""
    kept = tuple(m for m in rendered.manifests if m.kind in RETAINED_KINDS)
    return retire_claims(dataclasses.replace(rendered, manifests=kept, replicas=0))

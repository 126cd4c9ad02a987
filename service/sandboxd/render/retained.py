"""A retained delete and retained claims: a sandbox keeps its data, not access, until a purge.

**What a retained delete keeps** (the rule every applier shares). Deleting a sandbox without purging keeps what
holds the owner's data: the Namespace, its ResourceQuota and the repository volumes (PersistentVolumeClaims), so
a later create finds the data where it left it. It removes everything else of the sandbox, in three steps
(``removal_step``):

1. what runs: the session StatefulSet and the MCP companion Deployment, so no pod uses what goes next;
2. how it is reached and configured: the Services, the HTTPRoute, the NetworkPolicy, the ConfigMap and the
   Secrets (the token);
3. access: the ServiceAccount, the Role (``pods/exec``, ``secrets``, …) and its RoleBinding. A retained sandbox
   grants nobody anything; a later create renders them again.

A purge removes everything, the volumes and the Namespace included. The file appliers (GitOps, directory)
write ``retained(rendered)``; the Kubernetes applier deletes the live objects of each step in order.

**Claims a sandbox's folder keeps after the sandbox stops rendering them** (``keep_claims``). The GitOps and
directory appliers write a sandbox's folder from its render. Without this, a repo that leaves the spec, or a
sandbox deleted without a purge and created again with other repos, would drop the claim's file, and a GitOps
agent that prunes would then delete the volume. So before a folder is written, every PersistentVolumeClaim it
already holds that the render no longer has is carried over, marked retained (``storage.retained_claim``), and
listed in the kustomization like any rendered object. A claim rendered again (its repo came back) is the
rendered one, unmarked. Carried claims join the rendered ones, all sorted by file name, where the render puts
its claims (after the Secrets, before the MCP configuration and the workloads).

Pure: it picks and marks manifests and kinds; the caller reads the claims the folder holds and passes them in as
``Manifest``s. What it deliberately does not do: read files, write or delete anything, or decide when a claim
may go (only a purge, which removes the whole folder).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Final

from sandboxd.errors import RenderError
from sandboxd.render import storage
from sandboxd.render.model import Manifest, RenderedSandbox

#: Kinds the render puts before its claims; the claims end the first run of these.
_BEFORE_CLAIMS: Final = frozenset(
    {"Namespace", "ResourceQuota", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy", "Secret", storage.KIND}
)

Identity = tuple[str, str | None, str]  # kind, namespace, name

#: Kinds a retained delete keeps. Everything else of the sandbox is removed.
RETAINED_KINDS: Final = frozenset({"Namespace", "ResourceQuota", storage.KIND})
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


def keep_claims(rendered: RenderedSandbox, previous: Iterable[Manifest]) -> RenderedSandbox:
    """``rendered`` plus every claim of ``previous`` it does not render, marked retained.

    A carried claim keeps its file name unless a rendered object took it; then it is
    ``pvc-retained-<claim>.yaml``. ``RenderError`` when even that is taken (never silently drop a claim).
    """
    own = {_identity(m.body) for m in rendered.manifests}
    taken = {m.filename for m in rendered.manifests}
    carried: list[Manifest] = []
    for manifest in sorted(previous, key=lambda m: (m.filename, m.name)):
        identity = _identity(manifest.body)
        if manifest.kind != storage.KIND or identity in own:
            continue
        filename = manifest.filename if manifest.filename not in taken else f"pvc-retained-{manifest.name}.yaml"
        if filename in taken:
            raise RenderError(
                f"retained PersistentVolumeClaim {manifest.name} has no free file name in the sandbox folder "
                f"({manifest.filename} and {filename} are taken)"
            )
        own.add(identity)
        taken.add(filename)
        carried.append(Manifest(filename, storage.retained_claim(manifest.body)))
    if not carried:
        return rendered
    return dataclasses.replace(rendered, manifests=_with_claims(rendered.manifests, carried))


def retire_claims(rendered: RenderedSandbox) -> RenderedSandbox:
    """``rendered`` with each of its own claims marked retained (a sandbox deleted without a purge)."""
    manifests = tuple(
        Manifest(m.filename, storage.retained_claim(m.body)) if m.kind == storage.KIND else m
        for m in rendered.manifests
    )
    return dataclasses.replace(rendered, manifests=manifests)


def _with_claims(manifests: tuple[Manifest, ...], carried: list[Manifest]) -> tuple[Manifest, ...]:
    end = next((i for i, m in enumerate(manifests) if m.kind not in _BEFORE_CLAIMS), len(manifests))
    head = [m for m in manifests[:end] if m.kind != storage.KIND]
    claims = sorted([*(m for m in manifests[:end] if m.kind == storage.KIND), *carried], key=lambda m: m.filename)
    return (*head, *claims, *manifests[end:])


def _identity(body: Mapping[str, Any]) -> Identity:
    metadata = body["metadata"]
    namespace = metadata.get("namespace")
    return (str(body["kind"]), None if namespace is None else str(namespace), str(metadata["name"]))

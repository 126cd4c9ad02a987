"""One PersistentVolumeClaim per repo, ``repo-<slug>`` (upstream §2.7), mounted at ``/workspace/<slug>``.

The repo is labelled by its slug (a valid label value) and the raw ``org/repo`` goes into an annotation;
upstream put the raw text into the label, which the API server refuses (§10 G4). Size and storage class are
settings (upstream hard-coded 5Gi and the default class).

A claim holds the owner's data, so no GitOps agent may ever delete it by pruning: every claim carries the
opt-outs Flux (``kustomize.toolkit.fluxcd.io/prune: disabled``) and Argo CD
(``argocd.argoproj.io/sync-options: Prune=false``) honour. Only a purge takes a claim away, by deleting the
sandbox's Namespace. ``retained_claim`` marks a claim the sandbox no longer renders (its repo left the spec, or
the sandbox was deleted without a purge) with ``openova.io/sandbox-retained: "true"``; the file appliers keep
such claims in the tree until a purge (``sandboxd.render.retained``).

What it deliberately does not do: clone the repo (the pty-server does), size volumes per repo, or delete
anything (PVCs outlive a non-purging delete; that is the applier's rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from sandboxd.naming import label_value
from sandboxd.render import labels
from sandboxd.render.context import RenderContext, RepoMount
from sandboxd.render.objects import new_object
from sandboxd.render.quantities import format_bytes

KIND: Final = "PersistentVolumeClaim"
#: Flux's kustomize-controller leaves an object carrying this in the cluster when it leaves the source.
FLUX_PRUNE: Final = "kustomize.toolkit.fluxcd.io/prune"
#: Argo CD does the same for ``Prune=false`` in this annotation.
ARGO_SYNC_OPTIONS: Final = "argocd.argoproj.io/sync-options"
#: On every claim: no GitOps agent prunes the owner's data.
PRUNE_OPT_OUTS: Final = {FLUX_PRUNE: "disabled", ARGO_SYNC_OPTIONS: "Prune=false"}
#: On a claim kept although the sandbox no longer renders it.
RETAINED: Final = "openova.io/sandbox-retained"


def filename(repo: RepoMount) -> str:
    return f"pvc-{repo.slug}.yaml"


def claim(ctx: RenderContext, repo: RepoMount) -> dict[str, Any]:
    body = new_object(
        "v1",
        "PersistentVolumeClaim",
        name=repo.claim,
        namespace=ctx.namespace,
        labels={**labels.common(ctx), labels.REPO: label_value(repo.slug)},
        annotations={labels.REPO: repo.repo, **PRUNE_OPT_OUTS},
    )
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": format_bytes(ctx.resources.pvc_size)}},
    }
    if ctx.settings.storage_class:
        spec["storageClassName"] = ctx.settings.storage_class
    body["spec"] = spec
    return body


def retained_claim(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the claim ``body`` marked retained, with the prune opt-outs (a claim written before they were
    rendered gains them); everything else as it was, so marking a marked claim changes nothing."""
    metadata = dict(body["metadata"])
    metadata["annotations"] = {**(metadata.get("annotations") or {}), **PRUNE_OPT_OUTS, RETAINED: "true"}
    return {**body, "metadata": metadata}


def is_retained(body: Mapping[str, Any]) -> bool:
    annotations = body["metadata"].get("annotations") or {}
    return annotations.get(RETAINED) == "true"

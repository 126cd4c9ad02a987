"""One PersistentVolumeClaim per repo, ``repo-<slug>`` (upstream §2.7), mounted at ``/workspace/<slug>``.

The repo is labelled by its slug (a valid label value) and the raw ``org/repo`` goes into an annotation;
upstream put the raw text into the label, which the API server refuses (§10 G4). Size and storage class are
settings (upstream hard-coded 5Gi and the default class).

What it deliberately does not do: clone the repo (the pty-server does), size volumes per repo, or delete
anything (PVCs outlive a non-purging delete; that is the applier's rule).
"""

from __future__ import annotations

from typing import Any

from sandboxd.naming import label_value
from sandboxd.render import labels
from sandboxd.render.context import RenderContext, RepoMount
from sandboxd.render.objects import new_object
from sandboxd.render.quantities import format_bytes


def filename(repo: RepoMount) -> str:
    return f"pvc-{repo.slug}.yaml"


def claim(ctx: RenderContext, repo: RepoMount) -> dict[str, Any]:
    body = new_object(
        "v1",
        "PersistentVolumeClaim",
        name=repo.claim,
        namespace=ctx.namespace,
        labels={**labels.common(ctx), labels.REPO: label_value(repo.slug)},
        annotations={labels.REPO: repo.repo},
    )
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": format_bytes(ctx.resources.pvc_size)}},
    }
    if ctx.settings.storage_class:
        spec["storageClassName"] = ctx.settings.storage_class
    body["spec"] = spec
    return body

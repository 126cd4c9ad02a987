"""The GitOps folder of one sandbox: one YAML file per object plus ``kustomization.yaml`` listing them.

The kustomization names every file in apply order and nothing else (no ``namespace:`` transformer, no common
labels: the objects already carry theirs), so the folder applies the same way through Flux or
``kubectl apply -k``. Every file is always listed, the LLM-gateway token Secret included (upstream dropped it on
passes that did not mint, so Flux pruned it: §10 G1).

What it deliberately does not do: write files or talk to git (the GitOps and directory appliers do).
"""

from __future__ import annotations

from typing import Any, Final

from sandboxd.errors import RenderError
from sandboxd.render.model import RenderedSandbox
from sandboxd.render.yamlio import to_yaml

KUSTOMIZATION: Final = "kustomization.yaml"


def kustomization(rendered: RenderedSandbox) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [m.filename for m in rendered.manifests],
    }


def files(rendered: RenderedSandbox) -> dict[str, bytes]:
    """File name → UTF-8 YAML, in apply order, ``kustomization.yaml`` last."""
    out: dict[str, bytes] = {}
    for manifest in rendered.manifests:
        if manifest.filename in out or manifest.filename == KUSTOMIZATION:
            raise RenderError(f"two objects would be written to {manifest.filename}")
        out[manifest.filename] = to_yaml(manifest.body).encode()
    out[KUSTOMIZATION] = to_yaml(kustomization(rendered)).encode()
    return out

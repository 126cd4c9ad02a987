"""The pure renderer: spec + settings + workload state → the ordered Kubernetes objects of one sandbox.

No I/O, no clock, no environment: the same input gives byte-identical output (golden files in
``tests/golden``). The public surface::

    render(request, settings) -> RenderedSandbox      every object, in apply order (``sandbox``)
    files(rendered) -> dict[str, bytes]               the GitOps folder, kustomization.yaml last (``kustomize``)
    kustomization(rendered) -> dict                   that kustomization (``kustomize``)
    to_yaml(obj) -> str                               the byte-stable YAML writer (``yamlio``)

One module per object family (namespaces, quotas, rbac, policies, secrets, storage, mcp, statefulsets, networking),
built
from a ``RenderContext`` derived once (``context``), with the quota split in ``resources``. ``retained`` adds to a
render the claims a sandbox's folder already holds and no longer renders (the file appliers never drop a volume).
"""

from sandboxd.render.kustomize import KUSTOMIZATION, files, kustomization
from sandboxd.render.model import Manifest, RenderedSandbox, RenderRequest, Workload
from sandboxd.render.sandbox import render
from sandboxd.render.yamlio import to_yaml

__all__ = [
    "KUSTOMIZATION",
    "Manifest",
    "RenderRequest",
    "RenderedSandbox",
    "Workload",
    "files",
    "kustomization",
    "render",
    "to_yaml",
]

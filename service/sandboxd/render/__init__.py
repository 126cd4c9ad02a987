"""The pure renderer: spec + settings + workload state → the ordered Kubernetes objects of one sandbox.

No I/O, no clock, no environment: the same input gives byte-identical output (golden files in
``tests/golden``).
"""

from sandboxd.render.model import Manifest, RenderedSandbox, RenderRequest, Workload

__all__ = ["Manifest", "RenderRequest", "RenderedSandbox", "Workload"]

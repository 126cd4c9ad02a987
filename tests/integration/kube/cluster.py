"""Reading the API server as the test sees it, and the sandboxes the tests render (the real renderer).

``Cluster`` talks over its own connection, independent of the applier under test; ``sandbox`` renders a
sandbox of owner ``<id>@acme.test`` with ``support.spine``'s runtime settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from sandboxd.adapters.kubernetes.resources import resource_of
from sandboxd.models.spec import SandboxSpec
from sandboxd.render import RenderedSandbox, RenderRequest, render
from sandboxd.render.model import Manifest
from support import kuberaw
from support.spine import runtime_settings, spec

MANAGER = "sandboxd"
FQDN = "omantel.omani.works"  # support.spine.runtime_settings' sovereign FQDN


@dataclass
class Cluster:
    """Plain reads and writes on the API server, as the test (not the applier) sees it."""

    api: Any

    async def call(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json", **query: str
    ) -> Any:
        return await kuberaw.call(self.api, method, path, body, content_type=content_type, **query)

    async def read(self, path: str) -> dict[str, Any] | None:
        try:
            found = await self.call("GET", path)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(found)

    async def get(self, path: str) -> dict[str, Any]:
        found = await self.read(path)
        assert found is not None, f"{path} does not exist"
        return found

    async def merge_patch(self, path: str, patch: dict[str, Any], *, manager: str) -> dict[str, Any]:
        return dict(
            await self.call("PATCH", path, patch, content_type="application/merge-patch+json", fieldManager=manager)
        )

    async def versions(self, sandbox: RenderedSandbox) -> dict[tuple[str, str], str]:
        """(kind, name) → resourceVersion of every rendered object, read from the server."""
        out: dict[tuple[str, str], str] = {}
        for manifest in sandbox.manifests:
            found = await self.get(path_of(manifest))
            out[(manifest.kind, manifest.name)] = found["metadata"]["resourceVersion"]
        return out


def path_of(manifest: Manifest) -> str:
    return resource_of(manifest).item(manifest.name, manifest.namespace)


def sandbox(sandbox_id: str, *, sessions: int = 2, repos: list[str] | None = None, **runtime: Any) -> RenderedSandbox:
    """The real renderer's output for a sandbox of owner ``<sandbox_id>@acme.test``."""
    request = RenderRequest(
        sandbox_id=sandbox_id,
        spec=SandboxSpec.model_validate(spec(f"{sandbox_id}@acme.test", sessions=sessions, repos=repos)),
    )
    return render(request, runtime_settings(**runtime))

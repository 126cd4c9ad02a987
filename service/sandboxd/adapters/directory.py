"""The directory applier: a sandbox's rendered files under ``<root>/sandbox/<owner-uid>/`` (dry runs, debugging).

The layout is the GitOps repository's (``sandbox/<owner-uid>/`` with a ``kustomization.yaml``), so
``kubectl apply -k <root>/sandbox/<owner-uid>`` applies what the reconciler would have applied. Only files whose
bytes changed are rewritten (each atomically), files the sandbox no longer renders are removed, and
``ApplyResult.changed`` says whether anything moved.

What it deliberately does not do: keep history (see the GitOps applier), refuse Secret values, or know whether
anything runs (``ready_replicas`` is always None).

Concurrency: the reconciler applies one sandbox at a time per key, and each sandbox owns its own folder, so no
lock is taken. File I/O runs in a worker thread; ``OSError`` becomes ``ApplyRejected`` (no permission) or
``ApplyUnavailable`` (anything else, e.g. a full disk) here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from anyio import to_thread

from sandboxd.adapters.folders import FolderChange, object_refs, pruned, remove_folder, sync_folder
from sandboxd.adapters.retention import retained
from sandboxd.errors import ApplyRejected, ApplyUnavailable
from sandboxd.naming import gitops_folder
from sandboxd.reconcile.ports import ApplyResult
from sandboxd.render import files
from sandboxd.render.model import RenderedSandbox
from sandboxd.settings.service import ApplierSettings


class DirectoryApplier:
    """Writes sandboxes' files under ``root``; implements ``sandboxd.reconcile.ports.Applier``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_settings(cls, settings: ApplierSettings) -> DirectoryApplier:
        return cls(Path(settings.directory))

    def folder(self, sandbox: RenderedSandbox) -> Path:
        return self.root / gitops_folder(sandbox.owner_uid)

    async def apply(self, sandbox: RenderedSandbox, *, generation: int) -> ApplyResult:
        content = files(sandbox)
        change = await self._run(sync_folder, self.folder(sandbox), content)
        return ApplyResult(
            applied=object_refs(sandbox.manifests),
            changed=change.changed,
            pruned=pruned(change.previous, sandbox),
        )

    async def delete(self, sandbox: RenderedSandbox, *, purge: bool) -> None:
        if purge:
            await self._run(remove_folder, self.folder(sandbox))
        else:
            await self._run(sync_folder, self.folder(sandbox), files(retained(sandbox)))

    async def ready_replicas(self, sandbox: RenderedSandbox) -> int | None:
        return None

    async def aclose(self) -> None:
        return None

    async def _run(self, sync: Callable[..., FolderChange], *args: object) -> FolderChange:
        with _translated(self.root):
            return await to_thread.run_sync(sync, *args)


@contextmanager
def _translated(root: Path) -> Iterator[None]:
    """The one place file-system errors become ``sandboxd.errors``."""
    try:
        yield
    except PermissionError as exc:
        raise ApplyRejected(f"directory {root}: {exc}") from exc
    except ValueError as exc:
        raise ApplyRejected(f"directory {root}: {exc}") from exc
    except OSError as exc:
        raise ApplyUnavailable(f"directory {root}: {exc}") from exc

"""The directory applier: a sandbox's rendered files under ``<root>/sandbox/<owner-uid>/`` (dry runs, debugging).

The layout is the GitOps repository's (``sandbox/<owner-uid>/`` with a ``kustomization.yaml``), so
``kubectl apply -k <root>/sandbox/<owner-uid>`` applies what the reconciler would have applied. Only files whose
bytes changed are rewritten (each atomically), files the sandbox no longer renders are removed, except its
PersistentVolumeClaims, which stay marked retained until a purge (``sandboxd.adapters.folders.write_sandbox``),
and ``ApplyResult.changed`` says whether anything moved. A retained delete leaves the Namespace, quota and claims
(``sandboxd.render.retained``); a purge removes the folder.

Like the GitOps applier it never writes a Secret value: every write passes the same guard
(``sandboxd.adapters.gitops.secret_guard``) first, and a Secret with a value is refused (``ApplyRejected``).

What it deliberately does not do: keep history (see the GitOps applier), or know whether anything runs
(``ready_replicas`` is always None).

Concurrency: the reconciler applies one sandbox at a time per key, and each sandbox owns its own folder, so no
lock is taken. File I/O runs in a worker thread; ``OSError`` becomes ``ApplyRejected`` (no permission) or
``ApplyUnavailable`` (anything else, e.g. a full disk) here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from anyio import to_thread

from sandboxd.adapters.folders import FolderChange, object_refs, pruned, remove_folder, write_sandbox
from sandboxd.adapters.gitops.secret_guard import refuse_secret_values
from sandboxd.errors import ApplyRejected, ApplyUnavailable
from sandboxd.naming import gitops_folder
from sandboxd.reconcile.ports import ApplyResult
from sandboxd.render.model import RenderedSandbox
from sandboxd.render.retained import retained
from sandboxd.settings.service import ApplierSettings

T = TypeVar("T")


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
        written, change = await self._run(_write, self.folder(sandbox), sandbox)
        return ApplyResult(
            applied=object_refs(written.manifests),
            changed=change.changed,
            pruned=pruned(change.previous, written),
        )

    async def delete(self, sandbox: RenderedSandbox, *, purge: bool) -> None:
        if purge:
            await self._run(remove_folder, self.folder(sandbox))
        else:
            await self._run(_write, self.folder(sandbox), retained(sandbox))

    async def ready_replicas(self, sandbox: RenderedSandbox) -> int | None:
        return None

    async def aclose(self) -> None:
        return None

    async def _run(self, sync: Callable[..., T], *args: object) -> T:
        with _translated(self.root):
            return await to_thread.run_sync(sync, *args)


def _write(folder: Path, sandbox: RenderedSandbox) -> tuple[RenderedSandbox, FolderChange]:
    """Write ``sandbox`` to ``folder`` behind the GitOps applier's Secret-value guard."""
    return write_sandbox(folder, sandbox, check=refuse_secret_values)


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

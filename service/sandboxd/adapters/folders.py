"""A sandbox's rendered files in a folder: write only what changed, atomically, and remove what is gone.

The directory applier syncs ``<root>/sandbox/<owner-uid>/`` with ``write_sandbox`` and ``remove_folder``; the
GitOps applier syncs the same folder inside its working clone before staging it. Each file is written to a hidden
temporary file beside it and renamed over the old one, so a reader (or ``git add``) never sees half a file.

``write_sandbox`` never drops the owner's data: every PersistentVolumeClaim the folder already holds that the
sandbox no longer renders stays, marked retained (``sandboxd.render.retained``), so no GitOps agent prunes a
volume; only ``remove_folder`` (a purge) takes claims away. A folder file that is not valid YAML could be a
claim, so it is refused (``ValueError``) rather than overwritten.

What it deliberately does not do: decide which files a sandbox has (``sandboxd.render.files`` does), know git,
or translate errors (callers do, at their boundary). Blocking file I/O: call these from a worker thread.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

import yaml

from sandboxd.models.status import ObjectRef
from sandboxd.render import files as rendered_files
from sandboxd.render.model import Manifest, RenderedSandbox
from sandboxd.render.retained import keep_claims
from sandboxd.render.storage import KIND as CLAIM

log = logging.getLogger(__name__)

#: Written files are readable by other local users (kubectl, a GitOps agent); git tracks no other mode bits.
FILE_MODE: Final = 0o644
KUSTOMIZATION: Final = "kustomization.yaml"
#: libyaml's safe loader when PyYAML was built with it (about 8x faster on our files), else the pure-Python one.
SAFE_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class FolderChange:
    """What one sync did, and which objects the folder described before it."""

    written: tuple[str, ...]
    removed: tuple[str, ...]
    previous: frozenset[ObjectRef]

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


def write_sandbox(
    folder: Path, rendered: RenderedSandbox, *, check: Callable[[Mapping[str, bytes]], None] | None = None
) -> tuple[RenderedSandbox, FolderChange]:
    """Make ``folder`` hold ``rendered`` plus the claims it already holds that ``rendered`` does not; ``check``
    sees the files before anything is written. What the folder now describes, and what the sync did."""
    found = list(_documents(folder, strict=True))  # parsed once: the claims to keep and the objects before
    kept = keep_claims(rendered, [Manifest(name, doc) for name, doc in found if doc["kind"] == CLAIM])
    content = rendered_files(kept)
    if check is not None:
        check(content)
    return kept, _sync(folder, content, previous=frozenset(_ref(doc) for _, doc in found))


def _sync(folder: Path, files: Mapping[str, bytes], *, previous: frozenset[ObjectRef]) -> FolderChange:
    """Make ``folder`` hold exactly ``files`` (relative POSIX names → bytes), touching only what differs.

    ``ValueError`` when a name could escape the folder or would be hidden (``.``-prefixed names are this
    module's temporary files).
    """
    targets = {name: _inside(folder, name) for name in files}
    written: list[str] = []
    for name in sorted(files):
        path = targets[name]
        if _read(path) != files[name]:
            write_atomically(path, files[name])
            written.append(name)
    removed = _remove_all_but(folder, keep=set(targets.values()))
    return FolderChange(written=tuple(written), removed=removed, previous=previous)


def remove_folder(folder: Path) -> FolderChange:
    """Remove ``folder`` and everything in it; nothing to do when it is already gone."""
    previous = objects_in(folder)
    if not folder.exists():
        return FolderChange(written=(), removed=(), previous=previous)
    removed = tuple(sorted(_relative(folder, p) for p in folder.rglob("*") if not p.is_dir()))
    shutil.rmtree(folder)
    return FolderChange(written=(), removed=removed, previous=previous)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def object_refs(manifests: Iterable[Manifest]) -> tuple[ObjectRef, ...]:
    return tuple(_ref(m.body) for m in manifests)


def pruned(previous: frozenset[ObjectRef], rendered: RenderedSandbox) -> tuple[ObjectRef, ...]:
    """Objects the folder described before a sync and no longer does, in a stable order."""
    gone = previous - set(object_refs(rendered.manifests))
    return tuple(sorted(gone, key=lambda r: (r.kind, r.namespace or "", r.name, r.api_version)))


def objects_in(folder: Path) -> frozenset[ObjectRef]:
    """The objects the YAML files of ``folder`` describe (``kustomization.yaml`` and unreadable files skipped)."""
    return frozenset(_ref(doc) for _, doc in _documents(folder, strict=False))


def _documents(folder: Path, *, strict: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object in the YAML files of ``folder`` (``kustomization.yaml`` and temporaries skipped) with its
    file's relative name; an unreadable file is skipped, or ``ValueError`` when ``strict``."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*.yaml")):
        if path.name == KUSTOMIZATION or path.name.startswith("."):
            continue
        try:
            documents = list(yaml.load_all(path.read_bytes(), Loader=SAFE_LOADER))
        except (OSError, yaml.YAMLError) as exc:
            if not strict:  # only a report depends on it; the sync replaces or removes the file anyway
                log.debug("skipping unreadable %s: %s", path, exc)
                continue
            if isinstance(exc, OSError):
                raise
            raise ValueError(
                f"{_relative(folder, path)} is not valid YAML, so it may hold a PersistentVolumeClaim that must "
                f"be kept; fix or remove it"
            ) from exc
        yield from ((_relative(folder, path), doc) for doc in documents if _is_object(doc))


def _ref(body: Mapping[str, Any]) -> ObjectRef:
    metadata = body["metadata"]
    namespace = metadata.get("namespace")
    return ObjectRef(
        api_version=str(body["apiVersion"]),
        kind=str(body["kind"]),
        name=str(metadata["name"]),
        namespace=None if namespace is None else str(namespace),
    )


def _is_object(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and "apiVersion" in doc
        and "kind" in doc
        and isinstance(doc.get("metadata"), dict)
        and "name" in doc["metadata"]
    )


def _inside(folder: Path, name: str) -> Path:
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or any(p in ("..", ".") or p.startswith(".") for p in parts):
        raise ValueError(f"rendered file name {name!r} is not a plain relative path inside the sandbox folder")
    return folder.joinpath(*parts)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _relative(folder: Path, path: Path) -> str:
    return path.relative_to(folder).as_posix()


def _remove_all_but(folder: Path, *, keep: set[Path]) -> tuple[str, ...]:
    """Unlink every file under ``folder`` not in ``keep`` (stale temporaries included), then empty folders."""
    if not folder.is_dir():
        return ()
    removed: list[str] = []
    for path in sorted(folder.rglob("*"), reverse=True):  # children before their parents
        if path.is_dir():
            if path != folder and not any(path.iterdir()):
                path.rmdir()
        elif path not in keep:
            path.unlink()
            if not path.name.startswith("."):
                removed.append(_relative(folder, path))
    return tuple(sorted(removed))

"""Choosing and building the applier named by ``SANDBOXD_APPLIER`` (``directory``, ``gitops`` or ``kubernetes``).

The CLI calls ``build_applier`` and stays thin. The Kubernetes adapter is imported only when it is chosen, so a
machine without a cluster (``sandboxd dev``, the directory and GitOps appliers) never loads kubernetes_asyncio;
if that adapter is not installed the error is one ``ConfigurationError`` line.

What it deliberately does not do: open connections or touch the target. Appliers connect lazily, on their
first apply, and ``Service.run`` closes them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from sandboxd.adapters.directory import DirectoryApplier
from sandboxd.errors import ConfigurationError
from sandboxd.reconcile.ports import Applier
from sandboxd.settings import ApplierSettings


def gitops_available() -> bool:
    """Whether the GitOps adapter can be imported (``sandboxd dev`` falls back to a directory without it)."""
    try:
        importlib.import_module("sandboxd.adapters.gitops")
    except ImportError:
        return False
    return True


async def build_applier(settings: ApplierSettings, *, cache_dir: Path | None = None) -> Applier:
    """The applier ``settings.kind`` names; ``cache_dir`` is where the GitOps applier keeps its working clone."""
    if settings.kind == "directory":
        return DirectoryApplier.from_settings(settings)
    if settings.kind == "gitops":
        from sandboxd.adapters.gitops import GitOpsApplier  # noqa: PLC0415 - git is needed only when chosen

        return GitOpsApplier.from_settings(settings, cache_dir=cache_dir)
    return await _kubernetes(settings)


async def _kubernetes(settings: ApplierSettings) -> Applier:
    try:
        from sandboxd.adapters.kubernetes import KubernetesApplier  # noqa: PLC0415 - only when chosen
    except ImportError as exc:
        raise ConfigurationError(
            f"SANDBOXD_APPLIER=kubernetes, but the Kubernetes applier cannot be loaded ({exc}); "
            "use SANDBOXD_APPLIER=gitops or directory"
        ) from exc
    return await KubernetesApplier.from_settings(settings)

"""The envelope every rendered object shares: ``apiVersion``, ``kind`` and ``metadata``, in that key order.

Key order is part of the byte-stable output, so every builder starts from ``new_object`` and adds its body
keys after it in a fixed order.

What it deliberately does not do: choose labels (``sandboxd.render.labels``) or know any particular kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def new_object(
    api_version: str,
    kind: str,
    *,
    name: str,
    namespace: str | None,
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``{apiVersion, kind, metadata: {name, namespace?, labels, annotations?}}``; empty annotations left out."""
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}

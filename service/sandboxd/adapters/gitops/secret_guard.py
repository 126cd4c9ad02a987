"""The guard that keeps Secret values out of the GitOps repository (and out of the directory applier's tree).

The renderer renders no Secret values (the LLM-gateway token reaches the cluster another way), but a commit is
forever, so every file is checked again right before it is staged (or the directory applier writes it): a Secret
may carry no ``data`` or ``stringData`` at all, or only the placeholder key ``placeholder: ""``. Anything else is
refused with ``ApplyRejected`` naming the file, the Secret and its keys, never a value.

Pure: parses bytes, writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

import yaml

from sandboxd.errors import ApplyRejected

#: The one value a committed Secret may hold.
PLACEHOLDER: Final = {"placeholder": ""}
#: libyaml's safe loader when PyYAML was built with it (about 8x faster on our files), else the pure-Python one.
SAFE_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def refuse_secret_values(files: Mapping[str, bytes]) -> None:
    """``ApplyRejected`` when any file holds a Secret with a value; returns quietly otherwise."""
    for name in sorted(files):
        try:
            documents = list(yaml.load_all(files[name], Loader=SAFE_LOADER))
        except yaml.YAMLError as exc:
            raise ApplyRejected(
                f"{name} is not valid YAML, so it cannot be checked for Secret values: {exc}",
                reason="SecretValueRefused",
            ) from exc
        for obj in _objects(documents):
            _check(name, obj)


def _objects(documents: list[Any]) -> Iterator[Mapping[str, Any]]:
    """Every object of the documents, the items of a ``List`` included."""
    for doc in documents:
        if not isinstance(doc, Mapping):
            continue
        yield doc
        items = doc.get("items")
        if isinstance(items, list):
            yield from _objects(items)


def _check(name: str, obj: Mapping[str, Any]) -> None:
    if obj.get("kind") != "Secret":
        return
    for field in ("data", "stringData"):
        values = obj.get(field)
        if not values or values == PLACEHOLDER:
            continue
        keys = sorted(str(k) for k in values) if isinstance(values, Mapping) else ["<not a mapping>"]
        metadata = obj.get("metadata")
        secret = metadata.get("name", "?") if isinstance(metadata, Mapping) else "?"
        raise ApplyRejected(
            f"{name}: Secret {secret!r} carries {field} keys {keys}; secret values are never written to a GitOps "
            f'or directory tree (only {field}: {{placeholder: ""}} is allowed)',
            reason="SecretValueRefused",
        )

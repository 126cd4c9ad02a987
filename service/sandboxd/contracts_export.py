"""Write the JSON Schemas of every message in ``contracts/schemas`` from the pydantic models.

``python -m sandboxd.contracts_export contracts/schemas`` (``make contracts``) writes one
``<name>.schema.json`` per message in ``SCHEMAS``: pretty-printed, sorted keys, a trailing newline, so the
output is byte-stable and a test can compare the committed files with freshly generated ones. Files named
``*.schema.json`` in that folder that no message produces any more are removed.

Every schema is generated in pydantic's *validation* mode, camelCase (``by_alias``): it describes what the
models accept, which is also what they write, because every message is read back through the same model
(events and activity by the service, the status by consoles and the reconciler's compare-and-set, scale
commands by the scaler). Serialization mode would only drop ``format: date-time`` from the timestamps.
Per-field titles (``"Lasttransitiontime"``) are left out: they are noise next to the property name.

It does not write the AsyncAPI document or the examples: those are written by hand and checked by tests.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import CoreSchema

from sandboxd import models, naming
from sandboxd.models.events import EVENT_CLASSES
from sandboxd.reconcile.tenants import TenantEvent

SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
ID_BASE: Final = "https://schemas.openova.io/sandboxd/"
SUFFIX: Final = ".schema.json"

#: File stem → (title, model or type adapter). The stem is also how examples name the message they show.
SCHEMAS: Final[Mapping[str, tuple[str, type[BaseModel] | TypeAdapter[Any]]]] = {
    "sandbox-event": ("SandboxEvent", TypeAdapter(models.SandboxEvent)),
    **{f"sandbox-{verb}-event": (EVENT_CLASSES[verb].__name__, EVENT_CLASSES[verb]) for verb in naming.VERBS},
    "sandbox-spec": ("SandboxSpec", models.SandboxSpec),
    "sandbox-status": ("SandboxStatus", models.SandboxStatus),
    "desired-state": ("DesiredState", models.DesiredState),
    "owner-claim": ("OwnerClaim", models.OwnerClaim),
    "activity-report": ("ActivityReport", models.ActivityReport),
    "scale-command": ("ScaleCommand", models.ScaleCommand),
    # consumed, not ours: the part of the tenant service's event the tenant bridge reads (other fields ignored)
    "tenant-sandbox-requested": ("TenantSandboxRequested", TenantEvent),
}


class _WithoutFieldTitles(GenerateJsonSchema):
    """Pydantic's JSON Schema generator, minus the titles it invents for every field."""

    def field_title_should_be_set(self, schema: CoreSchema) -> bool:
        return False


def schema_for(stem: str) -> dict[str, Any]:
    """The JSON Schema of one message, with ``$schema``, ``$id`` and ``title`` set."""
    title, target = SCHEMAS[stem]
    adapter = target if isinstance(target, TypeAdapter) else TypeAdapter(target)
    schema = adapter.json_schema(by_alias=True, mode="validation", schema_generator=_WithoutFieldTitles)
    return {**schema, "$schema": SCHEMA_DIALECT, "$id": f"{ID_BASE}{stem}{SUFFIX}", "title": title}


def render(schema: Mapping[str, Any]) -> str:
    """The byte-stable text of a schema file."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    """File name → file text, for every message."""
    return {f"{stem}{SUFFIX}": render(schema_for(stem)) for stem in SCHEMAS}


def write(directory: Path) -> list[Path]:
    """Write every schema into ``directory`` (created if missing); return the files that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = render_all()
    changed = []
    for name, text in wanted.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    for stale in sorted(directory.glob(f"*{SUFFIX}")):
        if stale.name not in wanted:
            stale.unlink()
            changed.append(stale)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m sandboxd.contracts_export <directory>", file=sys.stderr)
        return 2
    for path in write(Path(args[0])):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

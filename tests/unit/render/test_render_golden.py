"""Golden files: three representative sandboxes, compared byte for byte with ``tests/golden/<case>/``.

A change to the output fails here with a unified diff. When the change is intended, regenerate on purpose::

    SANDBOXD_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/render/test_render_golden.py

and review the diff of ``tests/golden`` like any other code change.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from sandboxd.render import RenderedSandbox, files

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
CASES = ["minimal-stdio", "full", "http-mcp"]


def _update_requested() -> bool:
    return os.environ.get("SANDBOXD_UPDATE_GOLDEN") == "1"


def _write(folder: Path, produced: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.yaml"):
        if stale.name not in produced:
            stale.unlink()
    for name, content in produced.items():
        (folder / name).write_bytes(content)


@pytest.mark.parametrize("case", CASES)
def test_render_matches_golden_files(case: str, render_case: Callable[[str], RenderedSandbox]) -> None:
    produced = files(render_case(case))
    folder = GOLDEN / case
    if _update_requested():
        _write(folder, produced)
    expected = {path.name: path.read_bytes() for path in sorted(folder.glob("*.yaml"))}
    assert sorted(produced) == sorted(expected), "files added or removed; see the module docstring to regenerate"
    for name, content in produced.items():
        if content != expected[name]:
            diff = difflib.unified_diff(
                expected[name].decode().splitlines(keepends=True),
                content.decode().splitlines(keepends=True),
                fromfile=f"golden/{case}/{name}",
                tofile="rendered",
            )
            pytest.fail("".join(diff))

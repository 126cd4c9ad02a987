"""``sandboxd``'s arguments: ``-v`` is taken before or after the command, as ``sandboxctl`` takes its options; every
command ``sandboxd --help`` lists has a row in the command tables of README.md and docs/cli.md."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from sandboxd.cli.sandboxd import build_parser

ROOT = Path(__file__).parents[3]


@pytest.mark.parametrize("command", ["run", "init", "scaler", "tokens", "dev"])
def test_verbose_goes_before_or_after_the_command(command: str) -> None:
    parser = build_parser()
    assert parser.parse_args([command, "-v"]).verbose is True
    assert parser.parse_args(["-v", command]).verbose is True
    assert parser.parse_args([command, "--verbose"]).verbose is True
    assert parser.parse_args([command]).verbose is False


def commands() -> list[str]:
    """What ``sandboxd --help`` lists (argparse has no public way to ask a parser for its subcommands)."""
    parser = build_parser()
    (subparsers,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(subparsers.choices)


@pytest.mark.parametrize("page", ["README.md", "docs/cli.md"])
def test_every_command_has_a_row_in_the_command_tables(page: str) -> None:
    rows = [line for line in (ROOT / page).read_text().splitlines() if line.startswith("| `sandboxd ")]
    missing = [name for name in commands() if not any(row.startswith(f"| `sandboxd {name}") for row in rows)]
    assert not missing, f"{page} has no row for sandboxd {', '.join(missing)}"

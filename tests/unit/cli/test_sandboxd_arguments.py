"""``sandboxd``'s arguments: ``-v`` is taken before or after the command, as ``sandboxctl`` takes its options."""

from __future__ import annotations

import pytest

from sandboxd.cli.sandboxd import build_parser


@pytest.mark.parametrize("command", ["run", "init", "scaler", "tokens", "dev"])
def test_verbose_goes_before_or_after_the_command(command: str) -> None:
    parser = build_parser()
    assert parser.parse_args([command, "-v"]).verbose is True
    assert parser.parse_args(["-v", command]).verbose is True
    assert parser.parse_args([command, "--verbose"]).verbose is True
    assert parser.parse_args([command]).verbose is False

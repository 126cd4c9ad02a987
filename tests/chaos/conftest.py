"""The reliability suite's fixtures: each scenario's ``figures``, printed at the end of the run.

Every scenario starts its own servers and ``sandboxd run`` processes, so scenarios never share state; a scenario
fails when anything is lost or a process exits that nobody stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.chaos import Figures

_printed: list[str] = []


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    measured = Figures(request.node.name.removeprefix("test_"))
    yield measured
    outcome = "passed" if not getattr(request.node, "chaos_failed", False) else "FAILED"
    measured["outcome"] = outcome
    measured.record()
    _printed.append(measured.line())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if call.when == "call" and getattr(report, "failed", False):
        item.chaos_failed = True  # type: ignore[attr-defined]
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _printed:
        terminalreporter.section("chaos figures")
        for line in _printed:
            terminalreporter.write_line(line)

"""Shared pytest configuration: fixture plugins for the real servers the tests start themselves, and the
``docker`` marker: those tests skip with one line when no Docker engine answers, and fail instead with ``CI=true``.
"""

from __future__ import annotations

import pytest

from support import docker_engine

pytest_plugins = ["support.nats_fixtures", "support.kube_fixtures"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is None:
        return
    reason = docker_engine.unavailable()
    if reason is None:
        return
    from support.kube_fixtures import in_ci  # noqa: PLC0415 - after pytest_plugins, so its asserts are rewritten

    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)

"""Shared pytest configuration: fixture plugins for the real servers the tests start themselves."""

from __future__ import annotations

import pytest

pytest_plugins = ["support.nats_fixtures", "support.kube_fixtures"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

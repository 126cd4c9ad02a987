"""A 3-node nats-server cluster on loopback, JetStream on every node: for R3 topologies and leader changes.

Each node is a ``NatsServer`` (client port on 127.0.0.1) with a cluster port on 127.0.0.1 and routes to the
others. ``url`` lists every node, comma-separated, as ``NATS_URL`` would (nats-py itself wants
``servers=url.split(",")``). ``wait_for_jetstream`` waits until the meta leader is elected (JetStream answers an
account-info request), which takes a few seconds on a fresh cluster. Nodes can be killed and started again
(``kill(i)``, ``start_node(i)``) for leader-change scenarios.

Use the ``nats_cluster`` fixture (``support.nats_fixtures``, the conftest plugin, registers it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import nats
import nats.errors
import pytest

from sandboxd.adapters.natsserver import NatsServer, free_port

CLUSTER_NAME = "sandboxd-test"


@dataclass
class NatsCluster:
    root: Path
    size: int = 3
    nodes: list[NatsServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        cluster_ports = [free_port() for _ in range(self.size)]
        for index in range(self.size):
            routes = ",".join(f"nats://127.0.0.1:{port}" for i, port in enumerate(cluster_ports) if i != index)
            args = ["--name", f"n{index}", "--cluster_name", CLUSTER_NAME]
            args += ["--cluster", f"nats://127.0.0.1:{cluster_ports[index]}", "--routes", routes]
            self.nodes.append(NatsServer(store_dir=self.root / f"n{index}", extra_args=args))

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self) -> NatsCluster:
        for node in self.nodes:
            node.start()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def kill(self, index: int) -> None:
        """SIGKILL one node, as a crash would (its port is kept, so ``start_node`` brings it back)."""
        self.nodes[index].kill()

    def start_node(self, index: int) -> None:
        self.nodes[index].start()

    def index_of(self, server_name: str) -> int:
        return int(server_name.removeprefix("n"))


async def wait_for_jetstream(url: str, *, timeout: float = 60.0) -> None:
    """Until JetStream answers on ``url`` (a fresh cluster elects its meta leader first)."""
    nc = await nats.connect(servers=url.split(","), max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        js = nc.jetstream()
        with anyio.fail_after(timeout):
            while True:
                try:
                    await js.account_info()
                    return
                except (nats.errors.Error, TimeoutError):  # no meta leader yet: ServiceUnavailable, timeouts
                    await anyio.sleep(0.2)
    finally:
        await nc.close()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "cluster").start()
    try:
        yield cluster
    finally:
        cluster.stop()

"""A 3-node nats-server cluster on loopback, JetStream on every node: for R3 topologies and leader changes.

Each node is a ``NatsServer`` (client port on 127.0.0.1) with a cluster port on 127.0.0.1 and routes to the
others. ``url`` lists every node, comma-separated, as ``NATS_URL`` would (nats-py itself wants
``servers=url.split(",")``). ``wait_for_jetstream`` waits until the meta leader is elected (JetStream answers an
account-info request), which takes a few seconds on a fresh cluster. Nodes can be killed and started again
(``kill(i)``, ``start_node(i)``) for leader-change scenarios.

Each node also serves its monitoring endpoints on 127.0.0.1 (``monitor_urls``), and ``report()`` tells what each
node sees when a scenario stalls: its JetStream view of every stream (leader, replicas current/active/lag, the
replica count, the raft group) and consumer (leader, pending, acks pending, redelivered), whether a stream's
subjects have a subscriber on that node (a publish that finds none is answered "no responders"), a probe
publish through that node alone, and the tail of its log. With ``SANDBOXD_TEST_NATS_DEBUG=1`` the nodes log at
debug level (``-D``); each log is ``<root>/n<i>/nats-server.log``.

Use the ``nats_cluster`` fixture (``support.nats_fixtures``, the conftest plugin, registers it).
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import nats
import nats.errors
import pytest

from sandboxd.adapters.natsserver import NatsServer, free_port

CLUSTER_NAME = "sandboxd-test"
#: A header the stream leader checks before storing: a probe naming no stream is refused, never stored.
PROBE_HEADERS = {"Nats-Expected-Stream": "sandboxd-probe-no-such-stream"}


@dataclass
class NatsCluster:
    root: Path
    size: int = 3
    nodes: list[NatsServer] = field(default_factory=list)

    monitor_ports: list[int] = field(default_factory=list)
    down: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        cluster_ports = [free_port() for _ in range(self.size)]
        self.monitor_ports = [free_port() for _ in range(self.size)]
        debug = ["-D"] if os.environ.get("SANDBOXD_TEST_NATS_DEBUG") else []
        for index in range(self.size):
            routes = ",".join(f"nats://127.0.0.1:{port}" for i, port in enumerate(cluster_ports) if i != index)
            args = ["--name", f"n{index}", "--cluster_name", CLUSTER_NAME, "-m", str(self.monitor_ports[index])]
            args += ["--cluster", f"nats://127.0.0.1:{cluster_ports[index]}", "--routes", routes, *debug]
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
        self.down.add(index)

    def start_node(self, index: int) -> None:
        self.nodes[index].start()
        self.down.discard(index)

    def index_of(self, server_name: str) -> int:
        return int(server_name.removeprefix("n"))

    @property
    def monitor_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.monitor_ports]

    async def report(self, *, log_lines: int = 40) -> str:
        """What every node sees (for a scenario that stalls): see the module docstring."""
        parts = []
        for index, node in enumerate(self.nodes):
            if index in self.down:
                parts.append(f"--- n{index}: not running")
                continue
            parts.append(await _node_report(f"n{index}", node.url, self.monitor_urls[index]))
            log = node.store_dir / "nats-server.log"
            tail = log.read_text(errors="replace").splitlines()[-log_lines:] if log.exists() else []
            parts.append(f"--- n{index} log tail ({log}):\n" + "\n".join(tail))
        return "\n".join(parts)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own node's monitoring port
        return json.load(response)


def _probe_subject(pattern: str) -> str:
    """A literal subject a stream with this subject filter stores (every wildcard token made concrete)."""
    return ".".join("sandboxd-probe" if token in ("*", ">") else token for token in pattern.split("."))


def _matches(pattern: str, subject: str) -> bool:
    tokens, wanted = pattern.split("."), subject.split(".")
    for position, token in enumerate(tokens):
        if token == ">":
            return len(wanted) > position
        if position >= len(wanted) or (token != "*" and token != wanted[position]):
            return False
    return len(tokens) == len(wanted)


async def _probe(url: str, subject: str) -> str:
    """Publish through this node alone with an expected stream no stream has: the leader refuses it (so it is
    answered and never stored); "no responders" means no subscriber for the subject is known on this node."""
    try:
        nc = await nats.connect(servers=[url], allow_reconnect=False, connect_timeout=2)
    except Exception as exc:  # noqa: BLE001 - a diagnostic: any failure is the answer
        return f"cannot connect: {type(exc).__name__}"
    try:
        reply = await nc.request(subject, b"", timeout=3, headers=PROBE_HEADERS)
        return f"answered {reply.data[:120]!r}"
    except Exception as exc:  # noqa: BLE001 - a diagnostic: the exception nats-py raises is the answer
        return f"{type(exc).__module__}.{type(exc).__name__}"
    finally:
        await nc.close()


async def _node_report(name: str, url: str, monitor: str) -> str:
    try:
        jsz = await anyio.to_thread.run_sync(
            _get_json, f"{monitor}/jsz?accounts=true&streams=true&consumers=true&config=true&raft=true"
        )
        routez = await anyio.to_thread.run_sync(_get_json, f"{monitor}/routez?subs=detail")
    except OSError as exc:
        return f"--- {name}: monitoring unavailable: {exc}"
    meta = jsz.get("meta_cluster") or {}
    lines = [f"--- {name}: meta leader {meta.get('leader')!r}, routes {routez.get('num_routes')}"]
    for account in jsz.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            cluster, config = stream.get("cluster") or {}, stream.get("config") or {}
            replicas = [
                f"{r.get('name')}(current={r.get('current')},active={r.get('active')},lag={r.get('lag', 0)}"
                f"{',offline' if r.get('offline') else ''})"
                for r in cluster.get("replicas") or []
            ]
            subject = _probe_subject((config.get("subjects") or [""])[0])
            local = await anyio.to_thread.run_sync(_get_json, f"{monitor}/subsz?subs=1&test={subject}")
            remote = [
                f"{route.get('remote_name')}/rid:{route.get('rid')}"
                for route in routez.get("routes") or []
                if any(_matches(sub["subject"], subject) for sub in route.get("subscriptions_list_detail") or [])
            ]
            lines.append(
                f"  {stream.get('name')}: leader={cluster.get('leader')!r} replicas=[{' '.join(replicas)}] "
                f"num_replicas={config.get('num_replicas')} placement={config.get('placement')} "
                f"raft_group={stream.get('stream_raft_group')} last_seq={(stream.get('state') or {}).get('last_seq')}"
                f"\n    {subject}: local subscribers={local.get('total', 0)}, routes with interest={remote}, "
                f"probe: {await _probe(url, subject)}"
            )
            lines.extend(_consumer_line(consumer) for consumer in stream.get("consumer_detail") or [])
    return "\n".join(lines)


def _consumer_line(consumer: dict[str, Any]) -> str:
    cluster = consumer.get("cluster") or {}
    delivered, floor = consumer.get("delivered") or {}, consumer.get("ack_floor") or {}
    return (
        f"    consumer {consumer.get('name')}: leader={cluster.get('leader')!r} "
        f"pending={consumer.get('num_pending')} ack_pending={consumer.get('num_ack_pending')} "
        f"redelivered={consumer.get('num_redelivered')} waiting={consumer.get('num_waiting')} "
        f"delivered={delivered.get('stream_seq')} ack_floor={floor.get('stream_seq')}"
    )


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


@asynccontextmanager
async def reported_on_stall(cluster: NatsCluster) -> AsyncIterator[None]:
    """A deadline that passes inside (``TimeoutError``, or a wait's ``AssertionError``) prints ``cluster.report()``
    (pytest shows it with the failure)."""
    try:
        yield
    except (TimeoutError, AssertionError):
        with anyio.CancelScope(shield=True):
            print(f"cluster state when the deadline passed:\n{await cluster.report()}")
        raise


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "cluster").start()
    try:
        yield cluster
    finally:
        cluster.stop()

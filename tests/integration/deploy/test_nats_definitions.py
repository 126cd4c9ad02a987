"""deploy/nats/ says what ``sandboxd init`` creates: the files are what the generator writes from the topology, the
README's ``nats kv add`` lines match them, and (``nats``) a real server given ``ensure_topology`` holds exactly the
streams, consumers and buckets the files describe.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import nats
import pytest

from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.settings import TopologySettings

from .charts import REPO_ROOT

FOLDER = REPO_ROOT / "deploy" / "nats"
#: Stream settings compared with the server's view (the rest are server defaults the files leave out).
STREAM_KEYS = (
    "name",
    "subjects",
    "retention",
    "storage",
    "max_age",
    "max_msgs_per_subject",
    "num_replicas",
    "discard",
)
CONSUMER_KEYS = ("durable_name", "deliver_policy", "ack_policy", "ack_wait", "max_deliver", "max_ack_pending")


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_nats_generate", FOLDER / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_disk() -> dict[str, str]:
    return {str(path.relative_to(FOLDER)): path.read_text() for path in sorted(FOLDER.rglob("*.json"))}


def test_files_are_what_the_generator_writes() -> None:
    expected = generator().files()

    assert on_disk() == expected, "deploy/nats drifted from the topology: run .venv/bin/python deploy/nats/generate.py"


def test_readme_kv_commands_match_the_buckets() -> None:
    buckets = json.loads((FOLDER / "buckets.json").read_text())
    readme = (FOLDER / "README.md").read_text()
    commands = {
        m["name"]: (int(m["history"]), int(m["replicas"]))
        for m in re.finditer(
            r"nats kv add (?P<name>\S+) --history (?P<history>\d+) --storage file --replicas (?P<replicas>\d+)", readme
        )
    }

    assert commands == {name: (b["history"], b["replicas"]) for name, b in buckets.items()}
    for path in sorted((FOLDER / "streams").glob("*.json")) + sorted((FOLDER / "consumers").glob("*.json")):
        assert path.name in readme, f"README.md does not list {path.name}"


def subset(config: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: config.get(key) for key in keys}


@pytest.mark.nats
@pytest.mark.anyio
async def test_a_server_given_the_topology_holds_what_the_files_say(fresh_nats_server: NatsServer) -> None:
    nc = await nats.connect(fresh_nats_server.url)
    try:
        js = nc.jetstream()
        await ensure_topology(js, TopologySettings())

        for path in sorted((FOLDER / "streams").glob("*.json")):
            wanted = json.loads(path.read_text())
            live = (await js.stream_info(wanted["name"])).config.as_dict()
            assert subset(live, STREAM_KEYS) == subset(wanted, STREAM_KEYS), path.name
        for path in sorted((FOLDER / "consumers").glob("*.json")):
            wanted = json.loads(path.read_text())
            stream = path.name.split(".", 1)[0]
            live = (await js.consumer_info(stream, wanted["durable_name"])).config.as_dict()
            assert subset(live, CONSUMER_KEYS) == subset(wanted, CONSUMER_KEYS), path.name
        buckets = json.loads((FOLDER / "buckets.json").read_text())
        for name, wanted in buckets.items():
            status = await (await js.key_value(name)).status()
            assert status.history == wanted["history"], name
            backing = (await js.stream_info(f"KV_{name}")).config
            assert backing.num_replicas == wanted["replicas"], name
            assert backing.allow_direct is wanted["direct"], name
            if "marker_ttl_seconds" in wanted:  # records that expire on their own (per-message TTL)
                assert backing.allow_msg_ttl, name
                assert backing.subject_delete_marker_ttl == wanted["marker_ttl_seconds"], name
        names = {info.config.name async for info in _streams(js)}
        described = {json.loads(p.read_text())["name"] for p in (FOLDER / "streams").glob("*.json")}
        assert names == described | {f"KV_{name}" for name in buckets}, "a stream the files do not describe"
    finally:
        await nc.close()


async def _streams(js: Any) -> Any:
    for info in await js.streams_info():
        yield info


def test_generate_writes_into_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = generator()
    monkeypatch.setattr(module, "HERE", tmp_path)
    (tmp_path / "streams").mkdir()
    (tmp_path / "streams" / "OLD_STREAM.json").write_text("{}")

    assert module.main() == 0
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.json")}
    assert written == set(module.files())  # a stream no longer in the topology is removed

"""Delete → create on a real nats-server with the directory applier: a re-created sandbox is a new incarnation.

What a console relies on is checked on the status records themselves, every revision of them (a KV watch): the
generation never goes backwards, a deleted sandbox's conditions all speak of the delete, and a re-created one
leaves ``Deleted`` with the new spec on disk, also when the service restarted in between.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
import yaml
from nats.js.kv import KeyValue

from sandboxd import naming
from sandboxd.adapters.directory import DirectoryApplier
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.models.status import ConditionType, Phase, SandboxStatus
from sandboxd.settings import TopologySettings
from support.spine import Client, client, running_service, service_settings, spec, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]
EMAIL = "again@acme.com"
FOLDER = "sandbox/again-at-acme-com"


@asynccontextmanager
async def every_revision(c: Client, sandbox_id: str) -> AsyncIterator[list[SandboxStatus]]:
    """Every status record written for ``sandbox_id`` while the block runs, in order (a KV watch)."""
    seen: list[SandboxStatus] = []
    await ensure_topology(c.js, TopologySettings(ack_wait_s=5.0, max_deliver=6))  # as service_settings has it
    kv: KeyValue = await c.js.key_value(naming.STATUS_BUCKET)
    watcher = await kv.watch(naming.status_key(sandbox_id))

    async def follow() -> None:
        async for entry in watcher:
            if entry is not None and entry.value:
                seen.append(SandboxStatus.model_validate(json.loads(entry.value)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(follow)
        try:
            yield seen
        finally:
            await watcher.stop()


def replicas_on_disk(root: Path) -> int:
    statefulset = yaml.safe_load((root / FOLDER / "statefulset-pty-server.yaml").read_text())
    return int(statefulset["spec"]["replicas"])


def conditions(status: SandboxStatus) -> dict[str, tuple[str, str, int]]:
    return {c.type.value: (c.status.value, c.reason, c.observed_generation) for c in status.conditions}


@pytest.mark.parametrize("purge", [False, True])
async def test_a_re_created_sandbox_renders_its_new_spec_and_its_status_moves_on(
    fresh_nats_server: NatsServer, tmp_path: Path, purge: bool
) -> None:
    sid = unique_id()
    applier = DirectoryApplier(tmp_path)
    settings = service_settings(fresh_nats_server.url)
    async with client(fresh_nats_server.url) as c, every_revision(c, sid) as seen:
        async with running_service(settings, applier):
            await c.create(sid, EMAIL, sessions=1, repos=["acme/app"])
            await c.wait_status(sid, lambda s: s.observed_generation == 1 and s.phase is Phase.PROVISIONING)
            await c.publish("delete", sid, {"purge": purge})
            gone = await c.wait_status(sid, lambda s: s.phase is Phase.DELETED)
            await c.create(sid, EMAIL, sessions=4, repos=["acme/other"])
            reborn = await c.wait_status(sid, lambda s: s.phase is Phase.PROVISIONING and s.observed_generation > 2)
            on_disk = replicas_on_disk(tmp_path)
        # another process, remembering nothing, reconciles it again (start-up resync)
        async with running_service(settings, DirectoryApplier(tmp_path)):
            await c.publish("update", sid, {"spec": spec(EMAIL, sessions=3, repos=["acme/other"])})
            updated = await c.wait_status(sid, lambda s: s.observed_generation == 4)
            after_restart = replicas_on_disk(tmp_path)
        with anyio.fail_after(10):  # the watch delivers the last revision too
            while not seen or seen[-1].observed_generation < 4:
                await anyio.sleep(0.05)
    reason = "Purged" if purge else "Deleted"
    assert conditions(gone) == {
        "Accepted": ("True", "EventAccepted", 2),
        "Applied": ("False", reason, 2),
        "Ready": ("False", reason, 2),
        "Idle": ("False", reason, 2),
    }
    assert (gone.applied_objects, gone.endpoint) == ([], None)
    assert gone.namespace == (None if purge else "sandbox-again-at-acme-com")

    assert (on_disk, after_restart) == (4, 3)
    assert (tmp_path / FOLDER / "pvc-acme-other.yaml").exists()
    assert reborn.observed_generation == 3 and reborn.deleted_at is None and reborn.incarnation > gone.incarnation
    accepted = reborn.condition(ConditionType.ACCEPTED)
    assert accepted is not None and accepted.status == "True" and accepted.observed_generation == 3
    assert {c.last_transition_time for c in reborn.conditions} == {reborn.updated_at}  # a fresh record
    assert updated.phase is Phase.PROVISIONING and updated.incarnation == reborn.incarnation

    generations = [s.observed_generation for s in seen]
    assert generations == sorted(generations), f"the generation went backwards: {generations}"
    assert generations[-1] == 4

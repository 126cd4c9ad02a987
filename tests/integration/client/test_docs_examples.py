"""The examples of docs/client.md, run as written against a real nats-server and an in-process sandboxd.

Every ``python`` block of the page is executed (in order, in one namespace, as a reader would paste them);
then the functions they define are called as a platform service would call them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import pytest

from sandboxd import naming
from sandboxd.adapters.memory import MemoryApplier
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.client import SandboxClient
from sandboxd.models.status import Phase
from support.spine import running_service, service_settings, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

PAGE = Path(__file__).parents[3] / "docs" / "client.md"


def examples() -> dict[str, Any]:
    text = PAGE.read_text()
    blocks = list(re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M))
    assert len(blocks) >= 3, "docs/client.md lost its examples"
    namespace: dict[str, Any] = {"__name__": "docs_client_examples"}
    for block in blocks:
        padded = "\n" * text.count("\n", 0, block.start(1)) + block.group(1)  # tracebacks name the page's lines
        exec(compile(padded, str(PAGE), "exec"), namespace)  # noqa: S102 - our own documentation, on purpose
    return namespace


async def test_the_documented_examples_work(nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", nats_server.url)
    docs, sid = examples(), unique_id("doc")
    async with running_service(service_settings(nats_server.url), MemoryApplier()):
        endpoint = await docs["provision"](sid, "docs@acme.com", "signup-1")
        assert endpoint and sid not in await docs["not_ready"]()
        assert await docs["provision"](sid, "docs@acme.com", "signup-1") == endpoint  # the same request again

        async with anyio.create_task_group() as tg:
            seen: list[str] = []

            async def follow() -> None:
                seen.extend(await docs["follow"](sid, 1))

            tg.start_soon(follow)
            assert await docs["pause_for_billing"](sid) is True
        assert seen[-1] in (Phase.SUSPENDED.value, Phase.READY.value)
        assert await docs["pause_for_billing"](unique_id("nobody")) is False

        async with SandboxClient.connect() as sandboxes:
            assert (await sandboxes.get(sid)).phase is Phase.SUSPENDED

            kv = await sandboxes.nc.jetstream().key_value(naming.STATUS_BUCKET)
            unreadable = unique_id("doc-bad")
            await kv.put(naming.status_key(unreadable), b'{"not":"a status"}')
            try:
                listed, unknown = await docs["console_rows"]()
            finally:
                await kv.delete(naming.status_key(unreadable))  # the session's server: no other test sees it
            assert sid in listed and unreadable not in listed and unreadable in unknown

"""Publisher-chosen text never drives the reader's terminal: ``sandboxctl``'s tables, describe, watch lines and
errors show control and bidi characters as ``?`` (``cli.terminal.printable``); ``-o json`` keeps the value.

A real nats-server, an in-process sandboxd (memory applier), ``sandboxctl`` as a subprocess; the create's event id
carries an ANSI colour escape and a right-to-left override, as a hostile or careless publisher could send.
"""

from __future__ import annotations

import json

import pytest
from sandboxd_processes import ctl

from sandboxd.adapters.memory import MemoryApplier
from sandboxd.adapters.natsserver import NatsServer
from support.spine import running_service, service_settings, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

HOSTILE_ID = "id-x\x1b[31mred\u202egnp\x9b2J\x7f"
SHOWN_ID = "id-x?[31mred?gnp?2J?"
CONTROLS = ["\x1b", "\u202e", "\x9b", "\x7f"]


async def test_status_shows_a_hostile_event_id_as_question_marks_and_json_keeps_it(nats_server: NatsServer) -> None:
    url, sid = nats_server.url, unique_id("esc")
    async with running_service(service_settings(url), MemoryApplier()):
        created = await ctl(
            "create", sid, "--email", "esc@acme.com", "--org", "acme", "--event-id", HOSTILE_ID, "--wait", url=url
        )
        assert created.returncode == 0, created.stderr
        described = await ctl("status", sid, url=url)
        wide = await ctl("status", "-o", "wide", url=url)
        as_json = await ctl("status", sid, "-o", "json", url=url)
        missing = await ctl("delete", f"{sid}-gone", url=url)
    for done in (created, described, wide):
        assert done.returncode == 0, done.stderr
        assert not any(c in done.stdout + done.stderr for c in CONTROLS), repr(done.stdout)
    assert f"(event id {SHOWN_ID})" in created.stdout
    assert SHOWN_ID in described.stdout and SHOWN_ID in wide.stdout
    assert json.loads(as_json.stdout)["eventId"] == HOSTILE_ID
    assert missing.returncode == 1 and not any(c in missing.stderr for c in CONTROLS)

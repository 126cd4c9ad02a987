"""``sandboxd run`` with the tenant bridge on, as a process: a tenant request becomes a converged sandbox.

The test plays the tenant service: it makes its stream only after the service is up (the bridge waits for it
instead of exiting), publishes a malformed request and a valid one, and reads the dead letter and the sandbox's
status back. The process never stops on the tenant service's account and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from sandboxd_processes import Expectation, Services, wait_converged, wait_fetching

from sandboxd import naming
from sandboxd.adapters.jetstream import headers as dead
from sandboxd.adapters.natsserver import NatsServer
from support.spine import client, unique_id
from support.tenants import DEFAULTS, TENANT_STREAM_CONFIG, sandbox_of, tenant_request

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


async def test_run_bridges_a_tenant_request_to_a_sandbox_and_dead_letters_a_malformed_one(
    fresh_nats_server: NatsServer, tmp_path: Path
) -> None:
    services = Services(fresh_nats_server.url, tmp_path / "rendered", tmp_path)
    email, event_id = f"{unique_id('ceo')}@acme.com", unique_id("evt")
    # sandbox-ent: upstream's concurrentSessions 0 is invalid; the bridge gives the most the spec allows
    want = Expectation(sandbox_of(email), email, sessions=10)
    want.event_id = f"tenant:{event_id}"
    try:
        service = services.start(SANDBOXD_TENANT_BRIDGE="true")
        async with client(fresh_nats_server.url) as c:
            await wait_fetching(c.js)  # the service is up while the tenant stream does not exist yet
            await c.js.add_stream(TENANT_STREAM_CONFIG)
            await c.js.publish(DEFAULTS.subject, b"not json", headers={"Nats-Msg-Id": "broken-1"})
            await c.js.publish(DEFAULTS.subject, tenant_request(event_id, owner_email=email))
            await wait_converged(c, services.root, [want], timeout=45, logs=services.logs)

            letter = await c.js.get_last_msg(naming.DLQ_STREAM, naming.dlq_subject(DEFAULTS.subject))
            headers = letter.headers or {}
            assert headers[dead.H_REASON] == "InvalidEvent"
            assert headers[dead.H_STREAM] == DEFAULTS.stream
            assert letter.data == b"not json"
            stored = await c.js.get_last_msg(naming.EVENTS_STREAM, naming.event_subject("create", want.sandbox_id))
            assert json.loads(stored.data or b"{}")["source"] == "sandboxd/tenant-bridge"
            bridge = await c.js.consumer_info(DEFAULTS.stream, DEFAULTS.consumer)
            assert bridge.num_pending == 0
        service.signal(signal.SIGTERM)
        assert await service.wait(timeout=20) == 0
    finally:
        services.stop_all()
    log = service.output()
    assert "Traceback" not in log
    assert f"stream {DEFAULTS.stream} does not exist yet" in log  # logged once and waited out

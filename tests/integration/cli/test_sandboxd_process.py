"""``sandboxd run`` and ``sandboxd init`` as processes: start-up errors name the variable, init provisions."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest
from sandboxd_processes import SANDBOXD, Services, clean_env, service_env, wait_converged, wait_fetching
from sandboxd_processes import Expectation as Want

from sandboxd import naming
from sandboxd.adapters.natsserver import NatsServer, free_port
from support.spine import client, spec, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


async def run(*args: str, env: dict[str, str], timeout: float = 30.0) -> tuple[int, str, str]:
    with anyio.fail_after(timeout):
        done = await anyio.run_process([*SANDBOXD, *args], env=env, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_run_without_a_required_variable_names_it(tmp_path: Path) -> None:
    env = service_env(f"nats://127.0.0.1:{free_port()}", tmp_path)
    del env["SANDBOX_PTY_SERVER_IMAGE"]
    code, _, stderr = await run("run", env=env)
    assert code == 1
    assert "SANDBOX_PTY_SERVER_IMAGE is required but not set" in stderr
    assert "Traceback" not in stderr


async def test_run_refuses_a_latest_image(tmp_path: Path) -> None:
    env = service_env(f"nats://127.0.0.1:{free_port()}", tmp_path, SANDBOX_MCP_IMAGE="ghcr.io/x/mcp:latest")
    code, _, stderr = await run("run", env=env)
    assert code == 1
    assert "SANDBOX_MCP_IMAGE" in stderr and ":latest" in stderr


async def test_init_provisions_the_topology(fresh_nats_server: NatsServer) -> None:
    code, stdout, stderr = await run("init", "--server", fresh_nats_server.url, env=clean_env())
    assert code == 0, stderr
    assert f"JetStream topology ready on {fresh_nats_server.url}" in stdout
    async with client(fresh_nats_server.url) as c:
        for stream in (naming.EVENTS_STREAM, naming.DLQ_STREAM, naming.SCALE_STREAM):
            await c.js.stream_info(stream)
        await c.js.consumer_info(naming.EVENTS_STREAM, naming.EVENTS_CONSUMER)
        await c.js.key_value(naming.STATUS_BUCKET)
    again, _, _ = await run("init", "--server", fresh_nats_server.url, env=clean_env())
    assert again == 0  # idempotent


async def test_init_against_no_server_is_one_line() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    code, _, stderr = await run("init", "--server", url, "--connect-timeout", "1", env=clean_env())
    assert code == 1
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (  # after the warnings the connection attempts logged
        f"sandboxd: error: cannot connect to NATS at {url} within 1s "
        "(is the server running, and are the URL and credentials right?)"
    )


async def test_run_reconciles_and_stops_cleanly_on_sigterm(fresh_nats_server: NatsServer, tmp_path: Path) -> None:
    services = Services(fresh_nats_server.url, tmp_path / "rendered", tmp_path)
    want = Want(unique_id(), "run@acme.com", sessions=2)
    try:
        service = services.start()
        async with client(fresh_nats_server.url) as c:
            await wait_fetching(c.js)
            data = {"spec": spec(want.email, sessions=2)}
            await c.publish("create", want.sandbox_id, data, event_id=want.next_event_id())
            await wait_converged(c, services.root, [want], timeout=30)
        service.signal(signal.SIGTERM)
        assert await service.wait(timeout=20) == 0
    finally:
        services.stop_all()
    log = service.output()
    assert "SIGTERM: draining" in log and "Traceback" not in log

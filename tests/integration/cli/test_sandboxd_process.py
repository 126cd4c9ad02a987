"""``sandboxd run``, ``init``, ``scaler`` and ``dev`` as processes: start-up errors are one line naming what is
missing, init provisions, dev runs everything on one machine and Ctrl-C stops all of it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import anyio
import pytest
from sandboxd_processes import SANDBOXD, Services, clean_env, ctl, service_env, wait_converged, wait_fetching
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
    line = stderr.strip().splitlines()[-1]  # after the warnings the connection attempts logged
    assert line.startswith(f"sandboxd: error: cannot connect to NATS at {url}: ")
    assert line.endswith(": connection refused; is the server running, and is the URL right?")


async def test_run_reconciles_and_stops_cleanly_on_sigterm(fresh_nats_server: NatsServer, tmp_path: Path) -> None:
    services = Services(fresh_nats_server.url, tmp_path / "rendered", tmp_path)
    want = Want(unique_id(), "run@acme.com", sessions=2)
    try:
        service = services.start()
        async with client(fresh_nats_server.url) as c:
            await wait_fetching(c.js)
            data = {"spec": spec(want.email, sessions=2)}
            await c.publish("create", want.sandbox_id, data, event_id=want.next_event_id())
            await wait_converged(c, services.root, [want], timeout=30, logs=services.logs)
        service.signal(signal.SIGTERM)
        assert await service.wait(timeout=20) == 0
    finally:
        services.stop_all()
    log = service.output()
    assert "SIGTERM: draining" in log and "Traceback" not in log


@pytest.mark.parametrize("applier", [{}, {"SANDBOXD_APPLIER": "directory", "SANDBOXD_DIRECTORY": "rendered"}])
async def test_scaler_without_a_cluster_is_one_line(tmp_path: Path, applier: dict[str, str]) -> None:
    """The scaler patches StatefulSets, so it needs a cluster whichever applier the service uses; it says so."""
    env = clean_env(NATS_URL=f"nats://127.0.0.1:{free_port()}", HOME=str(tmp_path), **applier)
    env.pop("KUBECONFIG", None)
    code, _, stderr = await run("scaler", env=env)
    assert code == 1
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("sandboxd: error: a Kubernetes client (SANDBOXD_APPLIER=kubernetes, and `sandboxd scaler`")
    assert "needs KUBECONFIG" in line and "Traceback" not in stderr


@pytest.mark.git
async def test_dev_runs_everything_and_ctrl_c_stops_it_cleanly(tmp_path: Path) -> None:
    """``sandboxd dev --demo``: the banner's commands work, the demo lands in git, Ctrl-C exits 0."""
    data, out = tmp_path / "dev", tmp_path / "dev.out"
    env = clean_env(SANDBOXD_LOG_FORMAT="text")
    with out.open("wb") as sink:
        dev = await anyio.open_process(
            [*SANDBOXD, "dev", "--data", str(data), "--port", "0", "--demo"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        with anyio.fail_after(60):
            while "demo: published" not in out.read_text():
                assert dev.returncode is None, out.read_text()
                await anyio.sleep(0.1)
        banner = out.read_text()
        url = banner.split("export NATS_URL=")[1].split()[0]
        assert f"git --git-dir {data / 'gitops.git'} log --stat" in banner
        async with client(url) as c:
            status = await c.wait_status("demo", lambda s: s.observed_generation == 1, timeout=30)
        assert status.namespace == "sandbox-demo-at-example-com"
        listed = await ctl("status", url=url)
        assert listed.returncode == 0 and "demo" in listed.stdout
        log = await anyio.run_process(["git", "--git-dir", str(data / "gitops.git"), "log", "--oneline"])
        assert "sandboxd: reconcile sandbox demo generation 1" in log.stdout.decode()

        dev.send_signal(signal.SIGINT)
        with anyio.fail_after(30):
            code = await dev.wait()
    finally:
        if dev.returncode is None:
            dev.kill()
        await dev.aclose()
    assert code == 0, out.read_text()
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass  # nats-server is gone too
    assert "Traceback" not in out.read_text()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/cmdline").exists() and b"nats-server" in Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.mark.git
async def test_killed_dev_takes_its_nats_server_with_it(tmp_path: Path) -> None:
    """SIGKILL of ``sandboxd dev`` (no drain, no clean-up) still stops the embedded nats-server."""
    data, out = tmp_path / "dev", tmp_path / "dev.out"
    with out.open("wb") as sink:
        dev = await anyio.open_process(
            [*SANDBOXD, "dev", "--data", str(data), "--port", "0"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
    try:
        with anyio.fail_after(60):
            while "sandboxd dev is running" not in out.read_text():
                assert dev.returncode is None, out.read_text()
                await anyio.sleep(0.1)
        pid = int((data / "nats" / "nats-server.pid").read_text())
        assert alive(pid)
        dev.kill()
        await dev.wait()
        with anyio.fail_after(5):
            while alive(pid):
                await anyio.sleep(0.05)
    finally:
        if dev.returncode is None:
            dev.kill()
        await dev.aclose()
        pid_file = data / "nats" / "nats-server.pid"
        if pid_file.exists() and alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the failure above is the report; leave no server


async def test_dev_refuses_a_store_another_nats_server_uses(tmp_path: Path) -> None:
    data = tmp_path / "dev"
    with NatsServer(store_dir=data / "nats") as other:
        pid = int((data / "nats" / "nats-server.pid").read_text())
        code, _, stderr = await run("dev", "--data", str(data), "--port", "0", env=clean_env())
        assert other._process is not None and other._process.poll() is None
    assert code == 1
    line = stderr.strip().splitlines()[-1]
    assert f"nats-server pid {pid} already uses the store {data / 'nats'}" in line
    assert "Traceback" not in stderr


async def dev_until(data: Path, out: Path, text: str) -> anyio.abc.Process:
    """``sandboxd dev --demo`` on ``data``, its output in ``out``, once ``text`` shows there."""
    with out.open("wb") as sink:
        dev = await anyio.open_process(
            [*SANDBOXD, "dev", "--data", str(data), "--port", "0", "--demo"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=clean_env(SANDBOXD_LOG_FORMAT="text"),
        )
    try:
        with anyio.fail_after(60):
            while text not in (said := await anyio.Path(out).read_text()):
                assert dev.returncode is None, said
                await anyio.sleep(0.1)
    except BaseException:
        dev.kill()
        await dev.aclose()
        raise
    return dev


async def stop(dev: anyio.abc.Process) -> int:
    try:
        dev.send_signal(signal.SIGINT)
        with anyio.fail_after(30):
            return await dev.wait()
    finally:
        if dev.returncode is None:
            dev.kill()
        await dev.aclose()


@pytest.mark.git
async def test_dev_demo_keeps_the_users_update_across_a_restart_and_the_banner_create_works(tmp_path: Path) -> None:
    data = tmp_path / "dev"
    first = await dev_until(data, tmp_path / "first.out", "demo: published")
    try:
        banner = (tmp_path / "first.out").read_text()
        url = banner.split("export NATS_URL=")[1].split()[0]
        create = next(line.split() for line in banner.splitlines() if " create " in line)
        created = await ctl(*create[1:], url=url)  # the banner's first suggestion, as printed
        assert created.returncode == 0, created.stderr
        async with client(url) as c:
            await c.wait_status("demo", lambda s: s.observed_generation == 1, timeout=30)
        updated = await ctl(
            "update", "demo", "--email", "demo@example.com", "--org", "acme", "--sessions", "3", "--wait", url=url
        )
        assert updated.returncode == 0, updated.stderr
    finally:
        assert await stop(first) == 0

    second = await dev_until(data, tmp_path / "second.out", "demo: ")
    try:
        said = (tmp_path / "second.out").read_text()
        assert "demo: sandbox demo already exists" in said and "demo: published" not in said, said
        url = said.split("export NATS_URL=")[1].split()[0]
        shown = await ctl("status", "demo", "-o", "json", url=url)
        assert shown.returncode == 0, shown.stderr
        assert '"observedGeneration": 2' in shown.stdout  # the update stands: no second create
    finally:
        assert await stop(second) == 0

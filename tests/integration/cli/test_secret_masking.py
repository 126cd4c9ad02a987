"""Secrets never reach a terminal: ``sandboxctl`` and ``sandboxd`` with a canary password or token, written into
``NATS_URL`` or given as a flag, against no server, a server refusing the credentials and one accepting them.

Every error path prints one line and every log line passes the redactor; neither may quote the canary (raw or
percent-encoded), and the URL it came in is shown as ``user:***@``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import anyio
import pytest
from sandboxd_processes import SANDBOXCTL, SANDBOXD, ServiceProcess, clean_env, service_env

from sandboxd.adapters.natsserver import NatsServer, free_port
from sandboxd.client import SandboxClient
from sandboxd.errors import BrokerUnavailable
from sandboxd.settings import NatsSettings

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

CANARY = "Canary-7f3e-p@ss/word"  # '@' and '/' need percent-encoding in a URL: both forms are checked
RIGHT = "the-right-Passw0rd"
REFUSED = "authorization failed (wrong user/password, token, nkey or creds)"
IN_URL = quote(CANARY, safe="")


def leaked(text: str) -> list[str]:
    return [form for form in (CANARY, IN_URL, RIGHT, quote(RIGHT, safe="")) if form in text]


@pytest.fixture
def guarded_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A server that accepts user ``u`` with password ``RIGHT`` only."""
    with NatsServer(store_dir=tmp_path / "nats", extra_args=["--user", "u", "--pass", RIGHT]) as server:
        yield server


async def command(program: tuple[str, ...], *args: str, env: dict[str, str]) -> tuple[int, str]:
    with anyio.fail_after(60):
        done = await anyio.run_process([*program, *args], env=env, check=False)
    return done.returncode, done.stdout.decode() + done.stderr.decode()


async def service_output(tmp_path: Path, url: str, *, until: str) -> str:
    """What ``sandboxd -v run`` writes (debug level) until its log shows ``until``, then it is stopped."""
    env = service_env(url, tmp_path / "out", SANDBOXD_LOG_LEVEL="DEBUG")
    process = ServiceProcess(env, tmp_path / f"sandboxd-{free_port()}.log").start()
    try:
        with anyio.fail_after(30):
            while until not in process.output():
                assert process.process is not None and process.process.poll() is None, process.output()
                await anyio.sleep(0.1)
    finally:
        process.stop()
    return process.output()


async def test_no_server_never_shows_the_password_or_token(tmp_path: Path) -> None:
    port = free_port()
    with_password = f"nats://u:{IN_URL}@127.0.0.1:{port}"
    with_token = f"nats://{IN_URL}@127.0.0.1:{port}"
    outputs = {
        "sandboxctl status (password in NATS_URL)": await command(
            SANDBOXCTL, "status", "--connect-timeout", "2", env=clean_env(NATS_URL=with_password)
        ),
        "sandboxctl create (token in NATS_URL)": await command(
            SANDBOXCTL,
            "create",
            "a",
            "--email",
            "a@acme.com",
            "--org",
            "acme",
            "--connect-timeout",
            "2",
            env=clean_env(NATS_URL=with_token),
        ),
        "sandboxctl dlq list (--server with a password)": await command(
            SANDBOXCTL, "dlq", "list", "--server", with_password, "--connect-timeout", "2", env=clean_env()
        ),
        "sandboxctl status (--user/--password)": await command(
            SANDBOXCTL,
            "status",
            "--server",
            f"nats://127.0.0.1:{port}",
            "--user",
            "u",
            "--password",
            CANARY,
            "--connect-timeout",
            "2",
            env=clean_env(),
        ),
        "sandboxd init (password in NATS_URL)": await command(
            SANDBOXD, "init", "--connect-timeout", "2", env=clean_env(NATS_URL=with_password)
        ),
        "sandboxd init (token in NATS_URL)": await command(
            SANDBOXD, "init", "--connect-timeout", "2", env=clean_env(NATS_URL=with_token)
        ),
    }
    for what, (code, output) in outputs.items():
        assert code == 1, f"{what}: {output}"
        assert "cannot connect to NATS" in output, f"{what}: {output}"
        assert not leaked(output), f"{what} printed the secret: {output}"
    assert "nats://u:***@127.0.0.1" in outputs["sandboxctl status (password in NATS_URL)"][1]
    assert "nats://***@127.0.0.1" in outputs["sandboxd init (token in NATS_URL)"][1]

    run_log = await service_output(tmp_path, with_password, until="connection refused")
    assert "nats://u:***@127.0.0.1" in run_log
    assert not leaked(run_log), run_log


async def test_refused_credentials_never_show_the_password(guarded_server: NatsServer, tmp_path: Path) -> None:
    wrong = f"nats://u:{IN_URL}@127.0.0.1:{guarded_server.port}"
    outputs = {
        "sandboxctl status": await command(
            SANDBOXCTL, "status", "--connect-timeout", "3", env=clean_env(NATS_URL=wrong)
        ),
        "sandboxctl status (--password)": await command(
            SANDBOXCTL,
            "status",
            "--server",
            guarded_server.url,
            "--user",
            "u",
            "--password",
            CANARY,
            "--connect-timeout",
            "3",
            env=clean_env(),
        ),
        "sandboxd init": await command(SANDBOXD, "init", "--connect-timeout", "3", env=clean_env(NATS_URL=wrong)),
    }
    for what, (code, output) in outputs.items():
        assert code == 1, f"{what}: {output}"
        assert not leaked(output), f"{what} printed the secret: {output}"
        line = output.strip().splitlines()[-1]
        assert line.endswith(f"127.0.0.1:{guarded_server.port}: {REFUSED}"), f"{what}: {output}"

    with pytest.raises(BrokerUnavailable) as refused:  # the client library says the same, in the same words
        async with SandboxClient.connect(NatsSettings(url=guarded_server.url, user="u", password=CANARY)):
            pass
    assert str(refused.value) == f"cannot connect to NATS at {guarded_server.url}: {REFUSED}"

    # The service keeps trying (the server's users may be fixed without restarting it) and says why, once.
    run_log = await service_output(tmp_path, wrong, until=REFUSED)
    assert not leaked(run_log), run_log


async def test_a_server_without_a_scheme_never_shows_the_password_or_token(
    guarded_server: NatsServer, tmp_path: Path
) -> None:
    """nats-py reads ``user:password@host:port`` and ``token@host:port`` as nats:// URLs; so does the masking."""
    port = guarded_server.port
    wrong = f"u:{IN_URL}@127.0.0.1:{port}"
    token = f"{IN_URL}@127.0.0.1:{port}"
    outputs = {
        "sandboxctl -s user:password@": await command(
            SANDBOXCTL, "-s", wrong, "status", "--connect-timeout", "3", env=clean_env()
        ),
        "sandboxctl -s token@": await command(
            SANDBOXCTL, "-s", token, "status", "--connect-timeout", "3", env=clean_env()
        ),
        "sandboxd init (a list)": await command(
            SANDBOXD, "init", "--connect-timeout", "3", env=clean_env(NATS_URL=f"{wrong},{token}")
        ),
    }
    for what, (code, output) in outputs.items():
        assert code == 1, f"{what}: {output}"
        assert "cannot connect to NATS" in output, f"{what}: {output}"
        assert not leaked(output), f"{what} printed the secret: {output}"
    assert f"u:***@127.0.0.1:{port}" in outputs["sandboxctl -s user:password@"][1]

    run_log = await service_output(tmp_path, wrong, until=REFUSED)
    assert f"u:***@127.0.0.1:{port}" in run_log
    assert not leaked(run_log), run_log


async def test_accepted_credentials_never_show_the_password(guarded_server: NatsServer, tmp_path: Path) -> None:
    right = f"nats://u:{quote(RIGHT, safe='')}@127.0.0.1:{guarded_server.port}"
    code, output = await command(SANDBOXD, "init", env=clean_env(NATS_URL=right))
    assert code == 0, output
    assert f"JetStream topology ready on nats://u:***@127.0.0.1:{guarded_server.port}" in output
    code, output = await command(SANDBOXCTL, "status", "no-such-sandbox", env=clean_env(NATS_URL=right))
    assert code == 1 and "no-such-sandbox" in output
    outputs = [output, await service_output(tmp_path, right, until="resync enqueued")]
    for output in outputs:
        assert not leaked(output), output

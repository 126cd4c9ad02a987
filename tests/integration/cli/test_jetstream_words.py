"""A newcomer pointing the CLI at a nats-server without JetStream reads what is wrong in plain words."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxd.adapters.natsserver import find_binary, free_port

pytestmark = pytest.mark.nats

BIN = Path(sys.executable).parent


@pytest.fixture
def plain_nats(tmp_path: Path) -> Iterator[str]:
    """A nats-server with JetStream off (no ``-js``), on 127.0.0.1."""
    port = free_port()
    with (tmp_path / "nats.log").open("wb") as log:
        process = subprocess.Popen([find_binary(), "-a", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nats-server did not listen"
                time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize("command", [["sandboxctl", "status"], ["sandboxctl", "dlq", "list"]])
def test_jetstream_not_enabled_is_said_in_plain_words(plain_nats: str, command: list[str]) -> None:
    env = {**os.environ, "NATS_URL": plain_nats}
    done = subprocess.run(
        [str(BIN / command[0]), *command[1:]], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1
    assert "JetStream did not answer: it is not enabled on this server" in done.stderr, done.stderr
    assert "code=None" not in done.stderr and "Traceback" not in done.stderr

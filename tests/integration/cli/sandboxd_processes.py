"""Helpers for tests that run ``sandboxd`` and ``sandboxctl`` as real processes against a real nats-server.

``ServiceProcess`` is one ``sandboxd run`` with settings in its environment (directory applier, short ack wait)
and its output in a log file; ``ctl`` runs one ``sandboxctl`` command to completion. ``Expectation`` and
``wait_converged`` check what a sandbox must end as: desired state and status at its last event, and the
directory applier's StatefulSet file at the last replica count.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import nats.errors
import yaml
from anyio.abc import Process
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from nats.js.errors import KeyNotFoundError, NotFoundError, ServiceUnavailableError

from sandboxd import naming
from sandboxd.adapters.jetstream.stores import open_bucket
from sandboxd.errors import BrokerUnavailable
from sandboxd.models.desired import DesiredState
from sandboxd.models.status import Phase, SandboxStatus
from support.spine import Client

SANDBOXCTL = (sys.executable, "-m", "sandboxd.cli.sandboxctl")
SANDBOXD = (sys.executable, "-m", "sandboxd.cli.sandboxd")

RUNTIME_ENV = {
    "SANDBOX_PTY_SERVER_IMAGE": "ghcr.io/openova-io/openova/sandbox-pty-server:test-sha",
    "SANDBOX_MCP_IMAGE": "ghcr.io/openova-io/openova/sandbox-mcp-server:test-sha",
    "SANDBOX_NEWAPI_URL": "https://newapi.omantel.omani.works/v1",
    "SANDBOX_SOVEREIGN_FQDN": "omantel.omani.works",
}


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any sandboxd/NATS settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SANDBOX", "NATS_", "SOVEREIGN_"))}
    env.update(extra)
    return env


def service_env(url: str, root: Path, **overrides: str) -> dict[str, str]:
    settings = {
        "NATS_URL": url,
        **RUNTIME_ENV,
        "SANDBOXD_APPLIER": "directory",
        "SANDBOXD_DIRECTORY": str(root),
        "SANDBOXD_HEALTH_PORT": "0",
        "SANDBOXD_ACK_WAIT_SECONDS": "3",
        "SANDBOXD_RETRY_BASE_SECONDS": "0.2",
        "SANDBOXD_RETRY_CAP_SECONDS": "2",
        "SANDBOXD_SHUTDOWN_GRACE_SECONDS": "10",
        "SANDBOXD_CONCURRENCY": "4",
    }
    settings.update(overrides)
    return clean_env(**settings)


async def ctl(*args: str, url: str | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run one ``sandboxctl`` command to completion; stdout and stderr as text."""
    env = clean_env(**({"NATS_URL": url} if url else {}))
    with anyio.fail_after(timeout):
        done = await anyio.run_process([*SANDBOXCTL, *args], env=env, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


@dataclass
class ServiceProcess:
    """One ``sandboxd run`` subprocess; its stdout and stderr go to ``log``."""

    env: Mapping[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen([*SANDBOXD, "run"], env=dict(self.env), stdout=sink, stderr=sink)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        self.signal(signal.SIGKILL)
        self.wait_sync(10)

    def wait_sync(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    async def wait(self, timeout: float) -> int:
        """The exit code, polled (never blocking the event loop); ``AssertionError`` after ``timeout``."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while (code := self.process.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"sandboxd {self.pid} still running after {timeout}s; log:\n{self.output()}")
            await anyio.sleep(0.05)
        return code

    def stop(self) -> None:
        """Whatever state it is in: SIGTERM, then SIGKILL if it does not go."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Services:
    """Every service process a test started; all stopped at the end, whatever happened."""

    url: str
    root: Path
    logs: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    started: list[ServiceProcess] = field(default_factory=list)

    def start(self, **overrides: str) -> ServiceProcess:
        env = service_env(self.url, self.root, **{**self.env_overrides, **overrides})
        process = ServiceProcess(env, self.logs / f"sandboxd-{len(self.started) + 1}.log").start()
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()


# --- expectations -------------------------------------------------------------------------------------------


@dataclass
class Expectation:
    """What one sandbox must end as: the state its last event asked for.

    Not "generation == number of events": with several consumers an older event can reach the intake after a
    newer one, and is then (rightly) skipped as stale, so generations count accepted changes, not events.
    """

    sandbox_id: str
    email: str
    events: int = 0
    event_id: str = ""
    sessions: int = 0

    @property
    def owner_uid(self) -> str:
        return naming.owner_uid(self.email).value

    def next_event_id(self) -> str:
        self.events += 1
        self.event_id = f"{self.sandbox_id}-e{self.events}"
        return self.event_id


def replicas_on_disk(root: Path, owner_uid: str) -> int | None:
    """``spec.replicas`` of the StatefulSet the directory applier wrote, if it wrote one."""
    path = root / naming.gitops_folder(owner_uid) / "statefulset-pty-server.yaml"
    try:
        body: dict[str, Any] = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return None
    return int(body["spec"]["replicas"])


def replicas_in_git(repo: Path, owner_uid: str, branch: str = "main") -> int | None:
    """``spec.replicas`` of the StatefulSet committed to a (bare) GitOps repository, if committed."""
    path = f"{branch}:{naming.gitops_folder(owner_uid)}/statefulset-pty-server.yaml"
    shown = subprocess.run(["git", "--git-dir", str(repo), "show", path], capture_output=True, text=True, check=False)
    if shown.returncode != 0:
        return None
    return int(yaml.safe_load(shown.stdout)["spec"]["replicas"])


async def desired(c: Client, sandbox_id: str) -> DesiredState | None:
    """The desired state as the bucket's leader holds it (``Client.status`` says why)."""
    kv = await open_bucket(c.js, naming.DESIRED_BUCKET)
    try:
        entry = await kv.get(naming.desired_key(sandbox_id))
    except KeyNotFoundError:
        return None
    return DesiredState.model_validate_json(entry.value or b"")


def converged(status: SandboxStatus | None, wanted: DesiredState | None, root: Path, want: Expectation) -> bool:
    """The desired state holds the last event, and status and files show that generation and its replicas."""
    return (
        wanted is not None
        and wanted.event_id == want.event_id
        and status is not None
        and status.event_id == want.event_id
        and status.observed_generation == wanted.generation
        and status.phase in (Phase.PROVISIONING, Phase.READY)
        and status.replicas is not None
        and status.replicas.desired == want.sessions
        and replicas_on_disk(root, want.owner_uid) == want.sessions
    )


async def unconverged(c: Client, root: Path, wants: list[Expectation]) -> list[str]:
    left = []
    for want in wants:
        if not converged(await c.status(want.sandbox_id), await desired(c, want.sandbox_id), root, want):
            left.append(want.sandbox_id)
    return left


#: What a JetStream request meets while a cluster elects a leader (a fresh cluster, a node killed or back):
#: the waits below ask again rather than fail (``BrokerUnavailable``: the same, through ``open_bucket``'s boundary).
ELECTING = (
    nats.errors.TimeoutError,
    TimeoutError,
    nats.errors.NoRespondersError,
    ServiceUnavailableError,
    BrokerUnavailable,
)


async def wait_converged(
    c: Client, root: Path, wants: list[Expectation], *, timeout: float, logs: Path | None = None
) -> None:
    """Until every sandbox is ``converged``; else ``AssertionError`` saying, for the first few, where each one's
    last event got to (``explain``), short enough to survive a CI log's tail (``logs``: the services' logs)."""
    left: list[str] = [want.sandbox_id for want in wants]
    with anyio.move_on_after(timeout):
        while True:
            with contextlib.suppress(*ELECTING):
                left = await unconverged(c, root, wants)
            if not left:
                return
            await anyio.sleep(0.2)
    by_id = {want.sandbox_id: want for want in wants}
    lines = [await explain(c, root, by_id[sid], logs) for sid in left[:3]]
    raise AssertionError(f"{len(left)} sandboxes never converged: {left[:10]}\n" + "\n".join(lines))


async def explain(c: Client, root: Path, want: Expectation, logs: Path | None) -> str:
    """Where ``want``'s last event got to, each fact read from the stream's leader (a direct get may be answered
    by a lagging follower): the stream, the consumer, the desired state, the status, the files, the logs."""

    async def leader_read(stream: str, subject: str) -> str:
        try:
            msg = await c.js.get_last_msg(stream, subject)
        except NotFoundError:
            return "none"
        except Exception as exc:  # noqa: BLE001 - a report: say what the read met and go on
            return f"unreadable ({exc.__class__.__name__})"
        headers = msg.headers or {}
        body = msg.data or b"{}"
        try:
            fields = json.loads(body)
        except ValueError:
            fields = {}
        shown = {k: fields[k] for k in ("eventId", "id", "generation", "observedGeneration", "phase") if k in fields}
        return f"seq {msg.seq} {headers.get('Nats-Msg-Id', '')} {shown}"

    sid = want.sandbox_id
    desired_at = (f"KV_{naming.DESIRED_BUCKET}", f"$KV.{naming.DESIRED_BUCKET}.{naming.desired_key(sid)}")
    status_at = (f"KV_{naming.STATUS_BUCKET}", f"$KV.{naming.STATUS_BUCKET}.{naming.status_key(sid)}")
    facts = [
        f"{sid} wants {want.event_id} (sessions {want.sessions}):",
        f"last update in stream: {await leader_read(naming.EVENTS_STREAM, f'sandbox.update.{sid}')}",
        f"desired (leader): {await leader_read(*desired_at)}",
        f"status (leader): {await leader_read(*status_at)}",
        f"files: replicas {replicas_on_disk(root, want.owner_uid)}",
    ]
    with contextlib.suppress(Exception):
        info = await c.js.consumer_info(naming.EVENTS_STREAM, naming.EVENTS_CONSUMER)
        facts.append(
            f"consumer: ack floor {info.ack_floor.stream_seq if info.ack_floor else None}, "
            f"ack pending {info.num_ack_pending}, pending {info.num_pending}, redelivered {info.num_redelivered}"
        )
    with contextlib.suppress(Exception):
        dlq = await c.js.stream_info(naming.DLQ_STREAM)
        facts.append(f"dead letters: {dlq.state.messages}")
    if logs is not None:
        for log in sorted(logs.glob("sandboxd-*.log")):  # noqa: ASYNC240 - a failure report, after the waiting
            mentions = [line[:240] for line in log.read_text(errors="replace").splitlines() if sid in line]
            facts.append(f"{log.name}: {len(mentions)} lines name it; last: {mentions[-3:]}")
    return " | ".join(facts)


async def fetching(js: JetStreamContext, *, at_least: int = 1) -> bool:
    """Whether the shared consumer exists and ``at_least`` pull requests wait on it (one per running service)."""
    try:
        info = await js.consumer_info(naming.EVENTS_STREAM, naming.EVENTS_CONSUMER)
    except (NotFoundError, *ELECTING):
        return False
    return (info.num_waiting or 0) >= at_least


async def wait_fetching(js: JetStreamContext, *, services: int = 1, timeout: float = 30.0) -> None:
    await wait_for(lambda: fetching(js, at_least=services), timeout=timeout, what=f"{services} services fetching")


async def wait_drained(js: JetStreamContext, *, timeout: float) -> ConsumerInfo:
    """Poll the shared consumer until nothing is pending or unacknowledged; returns its last info."""
    info: ConsumerInfo | None = None
    with anyio.move_on_after(timeout):
        while True:
            try:
                info = await js.consumer_info(naming.EVENTS_STREAM, naming.EVENTS_CONSUMER)
            except ELECTING:
                info = None
            if info is not None and info.num_pending == 0 and info.num_ack_pending == 0:
                return info
            await anyio.sleep(0.2)
    raise AssertionError(f"the consumer never drained: {info}")


async def wait_for(condition: Any, *, timeout: float, what: str) -> None:
    """Poll an async predicate until it holds; ``AssertionError`` naming ``what`` after ``timeout``."""
    with anyio.move_on_after(timeout):
        while not await condition():
            await anyio.sleep(0.05)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@asynccontextmanager
async def watching(url: str, tmp_path: Path, *flags: str) -> AsyncIterator[tuple[Process, Path, Path]]:
    """``sandboxctl watch -s url`` running, its stdout and stderr in files; killed at the end if still running."""
    out, err = tmp_path / "watch.out", tmp_path / "watch.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        watcher = await anyio.open_process(
            [*SANDBOXCTL, "watch", "-s", url, *flags], stdout=stdout, stderr=stderr, env=clean_env()
        )
    try:
        yield watcher, out, err
    finally:
        if watcher.returncode is None:
            watcher.kill()
        await watcher.aclose()


async def until_in(path: Path, text: str, *, count: int = 1) -> None:
    while (await anyio.Path(path).read_text()).count(text) < count:
        await anyio.sleep(0.05)

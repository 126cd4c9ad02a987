"""On a real nats-server: a sandbox that keeps failing backs off to the cap, across a restart, and says so once.

F3: after a restart the start-up resync's kick drove the retries, and every one of them waited the first-failure
delay (the queue forgot the count whenever the sandbox had no work): 13 → 26 → 48 → 67 attempts at 5/15/30/45 s
with the defaults, and a bug logged its traceback at every pass (1,814 ERROR lines in 17 minutes).

Each test counts attempts in a window and compares them with the most the backoff allows there (every delay at
its shortest, half the capped exponential; twice that, for a redelivery and the queue's own retry each arriving
at their earliest), never with a duration: a slow machine only makes fewer attempts.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import anyio
import pytest

from sandboxd import naming
from sandboxd.adapters.directory import DirectoryApplier
from sandboxd.adapters.jetstream.stores import open_bucket
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.runtime.retry import Backoff
from sandboxd.settings import Settings
from support.spine import Client, client, running_service, service_settings, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

BASE_S, CAP_S = 0.2, 3.2
WINDOW_S = 12.0


def settings_for(url: str) -> Settings:
    # Deliveries enough that the event is never given up on here; no periodic resync within the test.
    return service_settings(
        url,
        worker={"retry_base_s": BASE_S, "retry_cap_s": CAP_S, "resync_interval_s": 3600.0},
        topology={"max_deliver": 50},
    )


def most_passes(window_s: float) -> int:
    """The most passes one retry source can start in ``window_s``, the first at once: 11 for 12 s (base 0.2 s,
    cap 3.2 s). With the delay stuck at the first one (0.1-0.2 s) it would be 60 or more."""
    backoff, passes, spent = Backoff(BASE_S, CAP_S), 1, 0.0
    while (spent := spent + backoff.ceiling(passes) / 2) <= window_s:
        passes += 1
    return passes


async def attempts(c: Client, sandbox_id: str) -> int:
    status = await c.status(sandbox_id)
    return status.attempts if status is not None else 0


async def counted_over(c: Client, sandbox_id: str, window_s: float) -> tuple[int, float]:
    """Attempts the status records during ``window_s``, and the seconds actually measured."""
    start, began = await attempts(c, sandbox_id), time.monotonic()
    await anyio.sleep(window_s)
    return await attempts(c, sandbox_id) - start, time.monotonic() - began


def failure_lines(caplog: pytest.LogCaptureFixture, sandbox_id: str) -> list[tuple[str, str, bool]]:
    return [
        (r.levelname, r.getMessage(), r.exc_info is not None)
        for r in caplog.records
        if r.name == "sandboxd.runtime.queueing" and f"reconcile of {sandbox_id} " in r.getMessage()
    ]


async def test_a_failing_apply_backs_off_across_a_restart_and_warns_once_per_run(
    fresh_nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The tester's repro: the directory applier pointed at a file, so every apply is ``ApplyUnavailable``."""
    not_a_directory = tmp_path / "notadir"
    not_a_directory.touch()
    sandbox_id = unique_id("bo")
    settings = settings_for(fresh_nats_server.url)
    caplog.set_level(logging.INFO, logger="sandboxd.runtime.queueing")
    async with client(fresh_nats_server.url) as c:
        async with running_service(settings, DirectoryApplier(not_a_directory)):
            await c.create(sandbox_id, "bo@acme.com")
            await c.wait_status(sandbox_id, lambda s: s.attempts >= 5 and s.last_error is not None)
        first_run = failure_lines(caplog, sandbox_id)
        caplog.clear()
        async with running_service(settings, DirectoryApplier(not_a_directory)):
            made, measured = await counted_over(c, sandbox_id, WINDOW_S)
        second_run = failure_lines(caplog, sandbox_id)
        status = await c.status(sandbox_id)
    assert status is not None and status.last_error is not None
    assert status.last_error.reason == "ApplyUnavailable" and status.last_error.retryable
    bound = 2 * most_passes(measured)  # the event's redelivery and the queue's retry kick, each at its earliest
    assert 3 <= made <= bound, f"{made} attempts in {measured:.1f}s after the restart (at most {bound})"
    warning = ("WARNING", f"reconcile of {sandbox_id} failed: {status.last_error.message}; retrying", False)
    assert first_run == [warning]
    assert second_run == [warning]  # once per run of failures, and each process has its own run


async def test_a_pass_that_raises_on_a_corrupt_record_backs_off_and_logs_its_traceback_once(
    fresh_nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The tester's other case: a desired-state record that does not parse makes every pass raise (a bug's
    path), and only the start-up resync's kick and the queue's own retries bring its passes."""
    sandbox_id = unique_id("dc")
    settings = settings_for(fresh_nats_server.url)
    caplog.set_level(logging.INFO, logger="sandboxd.runtime.queueing")
    async with client(fresh_nats_server.url) as c:
        await ensure_topology(c.js, settings.topology)
        desired = await open_bucket(c.js, naming.DESIRED_BUCKET)
        await desired.put(naming.desired_key(sandbox_id), b'{"sandboxId": "' + sandbox_id.encode() + b'"}')
        tmp_path.joinpath("out").mkdir()
        async with running_service(settings, DirectoryApplier(tmp_path / "out")) as service:
            queue = service.queue
            assert queue is not None
            with anyio.fail_after(10):
                while not queue.failing(naming.as_sandbox_id(sandbox_id)):
                    await anyio.sleep(0.02)
            start, began = queue.stats.passes, time.monotonic()
            await anyio.sleep(WINDOW_S)
            made, measured = queue.stats.passes - start, time.monotonic() - began
    bound = most_passes(measured)  # one source: the queue's retry kick
    assert 2 <= made <= bound, f"{made} passes in {measured:.1f}s (at most {bound})"
    # with its traceback, once
    assert failure_lines(caplog, sandbox_id) == [("ERROR", f"reconcile of {sandbox_id} raised ValidationError", True)]

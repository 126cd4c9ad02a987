"""SIGTERM and SIGINT: the first asks for a clean stop, a second one forces the process out.

``stop_on_signals`` serves the long-running commands (``sandboxd run``/``dev``): the first signal sets the stop
event the service drains on; a second exits at once with ``FORCED_EXIT`` (an operator who presses Ctrl-C twice
means it). ``until_interrupted`` serves commands that run until Ctrl-C and then succeed (``sandboxctl watch``).

Signal handlers are installed through anyio (the event loop's own handlers), so they replace Python's default
``KeyboardInterrupt`` while the command runs.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

log = logging.getLogger(__name__)

SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
FORCED_EXIT: Final = 130


async def stop_on_signals(stop: anyio.Event) -> None:
    """Set ``stop`` on the first signal; exit the process on the second. Runs until cancelled."""
    with anyio.open_signal_receiver(*SIGNALS) as received:
        async for signum in received:
            name = signal.Signals(signum).name
            if not stop.is_set():
                log.info("%s: draining (send it again to exit at once)", name)
                stop.set()
                continue
            print(f"{name} again: exiting without draining", file=sys.stderr, flush=True)
            os._exit(FORCED_EXIT)


async def until_interrupted(body: Callable[[], Awaitable[int]]) -> int:
    """Run ``body`` until it returns or a signal arrives; a signal is a normal end (exit code 0)."""
    result = 0
    async with anyio.create_task_group() as tg:

        async def run_body() -> None:
            nonlocal result
            result = await body()
            tg.cancel_scope.cancel()

        async def watch_signals() -> None:
            with anyio.open_signal_receiver(*SIGNALS) as received:
                async for _ in received:
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(watch_signals, name="signals")
        tg.start_soon(run_body, name="body")
    return result

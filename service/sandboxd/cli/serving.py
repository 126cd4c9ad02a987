"""Running the service in this process until SIGTERM/SIGINT: the part ``sandboxd run`` and ``dev`` share.

The first signal sets the stop event and ``Service.run`` drains (stop fetching, hand back what has not
started, let in-flight reconciles finish within ``SANDBOXD_SHUTDOWN_GRACE_SECONDS``, flush acks); a second
signal exits at once (``cli.signals``). A stop that arrives while the first connect is still being retried has
nothing to drain and simply ends the run.
"""

from __future__ import annotations

import logging
import os
import sys

import anyio

from sandboxd.app.service import Service
from sandboxd.cli.exits import OK
from sandboxd.cli.signals import stop_on_signals

log = logging.getLogger("sandboxd")


def configure_logging(verbose: bool = False) -> None:
    """Plain text logs on stderr at ``SANDBOXD_LOG_LEVEL`` (default INFO; ``-v`` for DEBUG)."""
    level = "DEBUG" if verbose else os.environ.get("SANDBOXD_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level if level in logging.getLevelNamesMapping() else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def serve(service: Service, *, stop: anyio.Event | None = None) -> int:
    """Run ``service`` until a signal (or ``stop``), then drain; exit code 0 after a clean stop."""
    stop = stop or anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_on_signals, stop, name="signals")

        async def give_up_connecting() -> None:
            await stop.wait()
            if not service.health.connected:  # still retrying the first connect: nothing to drain
                tg.cancel_scope.cancel()

        tg.start_soon(give_up_connecting, name="stop-while-connecting")
        await service.run(stop)
        tg.cancel_scope.cancel()
    log.info("stopped")
    return OK

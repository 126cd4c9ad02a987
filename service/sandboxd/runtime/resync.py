"""Resync: re-enqueue every desired sandbox at start-up and then every interval (±10 % jitter).

This is drift correction, and the reason an event acknowledged just before a crash is never lost: the desired
state it left behind is reconciled again by whichever replica resyncs next.
"""

from __future__ import annotations

import logging
import random

import anyio

from sandboxd import naming
from sandboxd.models.desired import DesiredState
from sandboxd.reconcile.ports import Store
from sandboxd.runtime.loops import LoopGuard
from sandboxd.runtime.queueing import KeyedQueue

log = logging.getLogger(__name__)


async def resync_once(desired: Store[DesiredState], queue: KeyedQueue) -> int:
    """Submit every sandbox the desired bucket holds (``naming.sandbox_ids``: a key that cannot be a sandbox id,
    written by hand, is skipped); how many."""
    sandbox_ids = naming.sandbox_ids(await desired.keys())
    for sandbox_id in sandbox_ids:
        queue.submit(sandbox_id)
    return len(sandbox_ids)


async def resync_forever(
    desired: Store[DesiredState], queue: KeyedQueue, *, interval_s: float, guard: LoopGuard | None = None
) -> None:
    """``resync_once`` now and every ``interval_s`` (±10 %) until the queue closes or the task is cancelled.

    A failed resync (the broker unavailable, or anything unforeseen) is logged, counted and tried again after
    the guard's growing pause, which is far shorter than the interval: a start-up resync must not be lost.
    """
    guard = guard or LoopGuard("resync")
    while True:
        try:
            count = await resync_once(desired, queue)
        except RuntimeError as exc:
            if queue.closing:
                return
            await guard.failed(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - the loop outlives any one failed resync
            await guard.failed(exc)
            continue
        guard.succeeded()
        log.info("resync enqueued %d sandboxes", count)
        await anyio.sleep(interval_s * random.uniform(0.9, 1.1))

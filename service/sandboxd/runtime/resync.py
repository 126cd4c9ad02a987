"""Resync: re-enqueue every desired sandbox at start-up and then every interval (±10 % jitter).

This is drift correction, and the reason an event acknowledged just before a crash is never lost: the desired
state it left behind is reconciled again by whichever replica resyncs next.
"""

from __future__ import annotations

import logging
import random

import anyio

from sandboxd.errors import RetryableError
from sandboxd.models.desired import DesiredState
from sandboxd.reconcile.ports import Store
from sandboxd.runtime.queueing import KeyedQueue

log = logging.getLogger(__name__)


async def resync_once(desired: Store[DesiredState], queue: KeyedQueue) -> int:
    keys = await desired.keys()
    for key in keys:
        queue.submit(key)
    return len(keys)


async def resync_forever(desired: Store[DesiredState], queue: KeyedQueue, *, interval_s: float) -> None:
    while True:
        try:
            count = await resync_once(desired, queue)
            log.info("resync enqueued %d sandboxes", count)
        except RetryableError as exc:
            log.warning("resync failed: %s", exc.message)
        except RuntimeError:
            return  # the queue is closing
        await anyio.sleep(interval_s * random.uniform(0.9, 1.1))

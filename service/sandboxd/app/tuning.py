"""Process-wide tuning for the long-running commands (``sandboxd run``, ``dev``, ``scaler``): the garbage collector.

The service allocates many short-lived objects per event (messages, parsed models, rendered manifests) and
keeps a large, stable set (settings, caches, the desired-state replica the idle sweeper follows). With
CPython's default thresholds the collector runs a young-generation pass every 700 net allocations and keeps
re-examining the stable set; collecting less often and freezing what start-up built costs a little memory
and gains throughput (``make bench`` measures it; see docs/benchmarks.md).
"""

from __future__ import annotations

import gc

#: Young-generation threshold: net allocations between collections (CPython's default is 700).
YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Freeze the objects start-up created (never scanned again) and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)

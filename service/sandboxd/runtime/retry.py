"""Exponential backoff with equal jitter, per sandbox: the delay before attempt ``n + 1`` after ``n`` failures.

Equal, not full, jitter: the delay is drawn from the upper half of the capped exponential, so it is never
near zero (a full-jitter draw of a few milliseconds would hammer a broker or an API server that just failed)
and retries of many sandboxes still spread over the other half.

A module of its own because two runtime modules share the one policy and neither owns it: ``disposition``
(how long a failed event waits before its redelivery) and ``loops`` (how long a failed loop iteration pauses);
``app`` builds it from ``WorkerSettings``. The GitOps applier's push retry is another policy (a few bounded
attempts of tens of milliseconds against a lost race, not a failure) and keeps its own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_MAX_EXPONENT = 64


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 1.0
    cap_s: float = 300.0

    def ceiling(self, failures: int) -> float:
        """The longest delay after ``failures`` failures (``base * 2**(failures-1)``, capped); the shortest is half."""
        # The exponent stops growing long after any cap is reached: a sandbox failing for days counts thousands
        # of failures, and 2**1024 does not fit in a float.
        return float(min(self.cap_s, self.base_s * 2.0 ** min(max(0, failures - 1), _MAX_EXPONENT)))

    def delay(self, failures: int, *, hint: float | None = None, rng: random.Random | None = None) -> float:
        """``ceiling(failures)`` jittered into its upper half; a source's hint is a floor."""
        jittered = self.ceiling(failures) * (0.5 + 0.5 * (rng or random).random())
        return float(max(jittered, hint or 0.0))

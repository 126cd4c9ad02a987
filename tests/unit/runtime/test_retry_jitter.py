"""The backoff's equal jitter: every delay lies in the upper half of the capped exponential (never near zero)."""

from __future__ import annotations

import random

from sandboxd.runtime.retry import Backoff


def test_delays_stay_in_the_upper_half_of_the_capped_exponential() -> None:
    backoff, rng = Backoff(base_s=1.0, cap_s=8.0), random.Random(7)
    for failures, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)):
        delays = [backoff.delay(failures, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # spread, not one fixed value


def test_a_hint_is_a_floor() -> None:
    assert Backoff(base_s=1.0, cap_s=8.0).delay(1, hint=30.0, rng=random.Random(1)) == 30.0

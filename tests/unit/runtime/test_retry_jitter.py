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


def test_a_run_of_thousands_of_failures_stays_at_the_cap() -> None:
    """A sandbox (or a loop) failing for days counts thousands of failures: 2**1024 once overflowed a float."""
    backoff = Backoff(base_s=0.5, cap_s=10.0)
    assert backoff.ceiling(1) == 0.5 and backoff.ceiling(3) == 2.0
    assert backoff.ceiling(1025) == backoff.ceiling(10**6) == 10.0
    assert 5.0 <= backoff.delay(10**6, rng=random.Random(3)) <= 10.0

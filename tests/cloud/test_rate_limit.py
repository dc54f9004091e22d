"""The read API's rate limit kept in the database (GCRA) lets through exactly what a token bucket of `burst`
tokens refilled at `rate` a second would, for any sequence of request times (hypothesis), and tells a refused
caller a wait after which the bucket has a token again."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cloud.customers import RateLimiter
from cloud.db import Db


def _bucket(rate: float, burst: float, gaps_ms: list[int]) -> list[bool]:
    """The plain token bucket (tokens refill at `rate`, capped at `burst`; a request takes one), in exact
    arithmetic: float epoch times near 1.7e9 are 2.4e-7 s apart, too coarse to decide a request that comes
    exactly when its token is back."""
    tokens, out = Fraction(burst), []
    for i, gap in enumerate(gaps_ms):
        if i:
            tokens = min(Fraction(burst), tokens + Fraction(gap, 1000) * Fraction(rate))
        out.append(tokens >= 1)
        tokens -= 1 if out[-1] else 0
    return out


_runs = itertools.count()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rate=st.sampled_from([0.5, 1.0, 4.0, 10.0]), burst=st.integers(1, 6),
       gaps=st.lists(st.integers(0, 3000), min_size=1, max_size=40))
@example(rate=10.0, burst=1, gaps=[0, 100])  # the token is back exactly: float epoch arithmetic said it was not
def test_the_database_bucket_lets_through_what_a_token_bucket_would(tmp_path: Path, rate: float, burst: int,
                                                                    gaps: list[int]) -> None:
    times, t = [], 1_700_000_000.0
    for g in gaps:
        t += g / 1000
        times.append(t)
    db = Db(tmp_path / f"cloud-{next(_runs)}.sqlite")
    limiter = RateLimiter(db, rate, burst)
    got = []
    for now in times:
        wait = limiter.take("k", now)
        got.append(wait == 0)
        if wait:
            assert 0 < wait <= 1 / rate + 1e-6
    db.close()
    assert got == _bucket(rate, burst, gaps)


def test_a_refused_caller_gets_through_after_the_wait_it_was_told(tmp_path: Path) -> None:
    db = Db(tmp_path / "cloud.sqlite")
    limiter = RateLimiter(db, rate=2.0, burst=2)
    now = 1_700_000_000.0
    assert [limiter.take("k", now) for _ in range(2)] == [0, 0]
    wait = limiter.take("k", now + 0.1)
    assert wait > 0
    assert limiter.take("k", now + 0.1 + wait - 0.01) > 0 and limiter.take("k", now + 0.1 + wait + 1e-6) == 0
    assert limiter.take("other", now) == 0  # per key
    db.close()

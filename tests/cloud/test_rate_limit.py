"""The read API's rate limit kept in the database (GCRA) lets through exactly what a token bucket of `burst`
tokens refilled at `rate` a second would, for any sequence of request times (hypothesis), and tells a refused
caller a wait after which the bucket has a token again."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.customers import RateLimiter
from cloud.db import Db


def _bucket(rate: float, burst: float, times: list[float]) -> list[bool]:
    """The plain token bucket (tokens refill at `rate`, capped at `burst`; a request takes one)."""
    tokens, last, out = burst, times[0] if times else 0.0, []
    for t in times:
        tokens = min(burst, tokens + (t - last) * rate)
        last = t
        out.append(tokens >= 1 - 1e-9)
        tokens -= 1 if out[-1] else 0
    return out


_runs = itertools.count()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rate=st.sampled_from([0.5, 1.0, 4.0, 10.0]), burst=st.integers(1, 6),
       gaps=st.lists(st.integers(0, 3000).map(lambda ms: ms / 1000), min_size=1, max_size=40))
def test_the_database_bucket_lets_through_what_a_token_bucket_would(tmp_path: Path, rate: float, burst: int,
                                                                    gaps: list[float]) -> None:
    times, t = [], 1_700_000_000.0
    for g in gaps:
        t += g
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
    assert got == _bucket(rate, burst, times)


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

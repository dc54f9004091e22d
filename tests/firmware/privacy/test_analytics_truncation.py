"""The dwell histogram's structural zeros and the truncation estimate added back to the mean: both are
post-processing of already-released values, so they add no epsilon; these tests pin what they compute."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np

from firmware.config.privacy import PrivacyConfig
from firmware.config.sensing import GeometryConfig, ZoneConfig
from firmware.privacy.accountant import Accountant
from firmware.privacy.analytics import Analytics, fine_edges, live_buckets, threshold, truncation_estimate
from firmware.privacy.dp import discrete_laplace, laplace_tail
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import TickResult
from firmware.sensing.quantize import GroundState

SITE = Geometry(GeometryConfig(zones=(ZoneConfig("site", ((-10, -10), (10, -10), (10, 10), (-10, 10))),)))
EDGES = [30.0, 60.0, 120.0, 240.0, 480.0]


def tick(wall: float, ids: list[int]) -> TickResult:
    xy = np.zeros((len(ids), 2))
    return TickResult(wall, [], [], GroundState(np.array(ids, np.int64), xy, xy.copy(), np.full(len(ids), 1.7)))


def test_live_buckets_are_those_a_clamped_dwell_can_reach():
    assert live_buckets(EDGES, 900) == 6
    assert live_buckets(EDGES, 421) == 5  # nobody stays 480 s in 421 s
    assert live_buckets(EDGES, 114) == 3
    assert live_buckets(EDGES, 120) == 4  # a dwell clamped to 120 lands in [120, 240)
    assert live_buckets([30.0, 120.0], 60) == 2


def test_truncation_estimate_counts_buckets_above_the_cap_that_clear_the_threshold():
    scale, beta = Fraction(1), 0.05
    t = threshold(1, scale, beta / 4)  # cap 60 in a 900 s window: 4 live buckets above it
    assert t == 5
    assert laplace_tail(t, scale) <= beta / 4 < laplace_tail(t - 1, scale)
    # [60, 120) holds t people (middle 90: 30 s each cut), [120, 240) holds t + 3 (middle 180: 120 s)
    hist = [100, 50, t, t + 3, 0, 0]
    assert truncation_estimate(EDGES, hist, 60, 900, scale, beta) == t * 30 + (t + 3) * 120
    # a bucket short of the threshold adds nothing (hard thresholding), and buckets below the cap never do
    assert truncation_estimate(EDGES, [100, 50, t - 1, 0, 0, 0], 60, 900, scale, beta) == 0
    assert truncation_estimate(EDGES, [100, 50, 0, 0, 0, 0], 60, 900, scale, beta) == 0
    assert truncation_estimate(EDGES, [100, 50, 0, 0, 0, 0], 30, 900, scale, beta) == 50 * 15  # [30, 60)
    # the top live bucket ends at the window's samples: [240, 421) has middle 330.5
    t4 = threshold(1, scale, beta / 3)  # above 60 in 421 s: [60, 120), [120, 240), [240, 421)
    assert truncation_estimate(EDGES, [0, 0, 0, 0, t4, 0], 60, 421, scale, beta) == t4 * (330.5 - 60)
    # buckets past the samples are ignored whatever they hold; a cap at the top leaves nothing to add
    assert truncation_estimate(EDGES, [0, 0, 0, 0, 0, 50], 60, 421, scale, beta) == 0
    assert truncation_estimate(EDGES, [0, 0, 0, 0, 0, 50], 900, 900, scale, beta) == 0


def test_an_empty_bucket_is_counted_at_most_beta_of_the_time():
    """Whatever the data, noise alone makes the estimate count some empty bucket with probability <= beta:
    empirically over 20,000 noised histograms with every long bucket empty (the bound is a union bound, so
    the rate sits below beta)."""
    rng = random.Random(3)
    scale, beta = Fraction(1), 0.05
    hits = 0
    for _ in range(20_000):
        hist = [100, 0] + [discrete_laplace(scale, rng) for _ in range(4)]
        hits += truncation_estimate(EDGES, hist, 60, 900, scale, beta) > 0
    assert hits / 20_000 <= beta
    assert hits > 0


def run(window_s: int, stays: dict[int, int], seed: int, samples: int) -> list[dict]:
    cfg = PrivacyConfig(window_s=window_s, daily_epsilon=1000, budget_file=":memory:")
    acc = Accountant(cfg.budget_file, cfg.budgets())
    out: list[dict] = []
    an = Analytics(cfg, SITE, acc, out.extend, rng=random.Random(seed))
    for s in range(samples):
        an(tick(float(s), [i for i, stay in stays.items() if s < stay]))
    an.close_window()
    return out


def test_structural_zero_buckets_are_released_as_exact_zeros():
    """In a 1-minute window nobody stays over 120 s: that bucket is released as 0 on every seed (no noise),
    and the visitor gate's threshold is the one for the two noised buckets."""
    stays = {i: 20 + i for i in range(40)}  # 40 people, 20 to 59 s
    for seed in range(30):
        out = run(60, stays, seed, 60)
        hist = [r for r in out if r["metric"] == "dwell_histogram"]
        assert hist and hist[0]["values"][2] == 0
    assert threshold(5, Fraction(1), 0.05, parts=2) < threshold(5, Fraction(1), 0.05, parts=3)


def test_the_mean_gets_back_what_the_cap_cut():
    """200 passers-by for 10 s and 6 people for 125 s in a 130 s window: the cap rule mostly keeps the 30 s
    cap (6 beyond is within its tail and noise allowance), which cuts 6 * 95 s = 570 people-seconds, 4.4 of the
    21.2 people present on average. With the estimate added back (the [120, 130] bucket clears its threshold
    of 4), the released mean over 20 seeds is within 6% of the truth; without it, 20% short."""
    stays = {i: 10 for i in range(200)} | {1000 + i: 125 for i in range(6)}
    true_mean = (200 * 10 + 6 * 125) / 130
    means, short = [], 0
    for seed in range(20):
        out = run(900, stays, seed, 130)
        occ = [r for r in out if r["metric"] == "occupancy" and r["zone"] == "site"]
        assert occ
        short += occ[0]["sensitivity"][1] <= 30 / 130
        means.append(occ[0]["values"][1])
    assert short >= 10
    assert abs(np.mean(means) - true_mean) < 0.06 * true_mean
    assert threshold(1, Fraction(1), 0.05 / 3) == 4  # above 30 s in 130 s: [30, 60), [60, 120), [120, 130]


def test_short_windows_get_a_quarter_window_cap_candidate():
    assert fine_edges(PrivacyConfig(window_s=60)) == [15.0, 30.0, 120.0]
    assert fine_edges(PrivacyConfig(window_s=120)) == [30.0, 60.0, 120.0]
    assert fine_edges(PrivacyConfig()) == EDGES
    assert live_buckets(fine_edges(PrivacyConfig(window_s=60)), 60) == 3  # [120, inf) is an exact zero

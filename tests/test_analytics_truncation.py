"""The dwell histogram's structural zeros and the truncation estimate added back to the mean: both are
post-processing of already-released values, so they add no epsilon; these tests pin what they compute."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np

from firmware.accountant import Accountant
from firmware.analytics import (
    TAIL_SHRINK,
    Analytics,
    PrivacyConfig,
    fine_edges,
    live_buckets,
    presence_cap,
    threshold,
    truncation_estimate,
)
from firmware.dp import laplace_var
from firmware.geometry import Geometry, GeometryConfig, ZoneConfig
from firmware.loop import TickResult
from firmware.quantize import GroundState

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
    sd = 1.0
    t = math.ceil(TAIL_SHRINK * sd)
    # cap 60: [60, 120) holds t people (middle 90: 30 s each cut), [120, 240) holds t + 3 (middle 180: 120 s)
    hist = [100, 50, t, t + 3, 0, 0]
    assert truncation_estimate(EDGES, hist, 60, 900, sd) == t * 30 + (t + 3) * 120
    # a bucket short of the threshold adds nothing (hard thresholding), and buckets below the cap never do
    assert truncation_estimate(EDGES, [100, 50, t - 1, 0, 0, 0], 60, 900, sd) == 0
    assert truncation_estimate(EDGES, [100, 50, 0, 0, 0, 0], 60, 900, sd) == 0
    assert truncation_estimate(EDGES, [100, 50, 0, 0, 0, 0], 30, 900, sd) == 50 * 15  # [30, 60) is above 30
    # the top live bucket ends at the window's samples: [240, 421) has middle 330.5
    assert truncation_estimate(EDGES, [0, 0, 0, 0, t, 0], 60, 421, sd) == t * (330.5 - 60)
    # buckets past the samples are ignored whatever they hold
    assert truncation_estimate(EDGES, [0, 0, 0, 0, 0, 50], 60, 421, sd) == 0


def test_presence_cap_counts_only_live_buckets_in_its_noise_allowance():
    cfg = PrivacyConfig()
    e = Fraction(4, 5)
    # 9 beyond 60 s: within 5 + sqrt(4 * 4 live buckets beyond) = 9, so 60 with a 900 s window...
    assert presence_cap(cfg, EDGES, [50, 10, 4, 5, 0, 0], e, 900, bucket_var=4.0) == 60
    # ...and with 200 samples only [60, 120) and [120, 240) are live beyond 60: allowance sqrt(8) < 4
    assert presence_cap(cfg, EDGES, [50, 10, 4, 5, 0, 0], e, 200, bucket_var=4.0) == 120


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
    """200 passers-by for 10 s and 5 people for 200 s in a 300 s window: the cap rule mostly keeps a short cap
    (5 beyond is within its tail), which cuts 5 * 170 s = 850 people-seconds, 2.8 of the 12 people present on
    average. With the estimate added back, the released mean over 20 seeds is within 8% of the truth."""
    stays = {i: 10 for i in range(200)} | {1000 + i: 200 for i in range(5)}
    true_mean = (200 * 10 + 5 * 200) / 300
    means, short = [], 0
    for seed in range(20):
        out = run(900, stays, seed, 300)
        occ = [r for r in out if r["metric"] == "occupancy" and r["zone"] == "site"]
        assert occ
        short += occ[0]["sensitivity"][1] <= 30 / 300
        means.append(occ[0]["values"][1])
    assert short >= 10
    assert abs(np.mean(means) - true_mean) < 0.08 * true_mean
    assert math.sqrt(laplace_var(Fraction(1))) * TAIL_SHRINK < 5  # the lingerers clear the threshold


def test_short_windows_get_a_quarter_window_cap_candidate():
    assert fine_edges(PrivacyConfig(window_s=60)) == [15.0, 30.0, 120.0]
    assert fine_edges(PrivacyConfig(window_s=120)) == [30.0, 60.0, 120.0]
    assert fine_edges(PrivacyConfig()) == EDGES
    assert live_buckets(fine_edges(PrivacyConfig(window_s=60)), 60) == 3  # [120, inf) is an exact zero

"""Aggregates: contribution bounds, k-suppression on the noised count, complements, budget that survives a
restart, and records that match their schema."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest

from firmware.config.privacy import PrivacyConfig
from firmware.config.sensing import GeometryConfig, LineConfig, ZoneConfig
from firmware.errors import BudgetError
from firmware.privacy.accountant import Accountant
from firmware.privacy.analytics import Analytics, threshold
from firmware.privacy.dp import discrete_laplace, laplace_tail
from firmware.schemas import validate
from firmware.sensing.geometry import Crossing, Geometry
from firmware.sensing.loop import TickResult
from firmware.sensing.quantize import GroundState

GEO = Geometry(GeometryConfig(
    zones=(ZoneConfig("west", ((-10, -10), (0, -10), (0, 10), (-10, 10))),
           ZoneConfig("east", ((0, -10), (10, -10), (10, 10), (0, 10)))),
    lines=(LineConfig("mid", (0, -10), (0, 10)),),
))


def tick(wall: float, people: dict[int, tuple[float, float]], crossings=()) -> TickResult:
    ids = np.array(sorted(people), np.int64)
    xy = np.array([people[i] for i in sorted(people)], float).reshape(-1, 2)
    g = GroundState(ids, xy, np.zeros_like(xy), np.full(len(ids), 1.7))
    return TickResult(wall, [], list(crossings), g)


def run_window(an: Analytics, people_west: int, people_east: int, start: float = 0.0, crossers: int = 0):
    """One minute at 2 Hz: people standing in each zone; `crossers` walk west to east once."""
    for s in range(120):
        wall = start + s * 0.5
        people = {i: (-5.0, 0.0) for i in range(people_west)}
        people.update({1000 + i: (5.0, 0.0) for i in range(people_east)})
        cross = [Crossing(2000 + i, "mid", "-") for i in range(crossers)] if s == 60 else []
        an(tick(wall, people, cross))
    an.close_window()


def make(tmp_path, rng_seed=0, **cfg) -> tuple[Analytics, list[dict], Accountant, list]:
    out: list[dict] = []
    audits: list = []
    config = PrivacyConfig(window_s=60, budget_file=str(tmp_path / "budget.sqlite"), **cfg)
    acc = Accountant(config.budget_file, config.budgets())
    an = Analytics(config, GEO, acc, out.extend, rng=random.Random(rng_seed),
                   audit=lambda event, t, **kw: audits.append((event, kw)))
    return an, out, acc, audits


def test_small_groups_are_released_at_most_beta_of_the_time_and_large_ones_almost_always(tmp_path):
    an, out, _, _ = make(tmp_path, k=5, epsilon=1.0, daily_epsilon=10_000)
    windows = 200
    for w in range(windows):
        run_window(an, people_west=4, people_east=40, start=w * 60.0)
    occ = [r for r in out if r["metric"] == "occupancy"]
    west = sum(r["zone"] == "west" for r in occ)
    east = sum(r["zone"] == "east" for r in occ)
    assert west <= 0.05 * windows * 2  # beta = 0.05 (with slack for 200 draws)
    assert east >= 0.95 * windows
    # the site total never comes out when a zone was held back
    assert sum(r["zone"] == "*" for r in occ) == min(west, east) if west else not any(r["zone"] == "*" for r in occ)
    for r in out:
        validate(r)


def test_threshold_keeps_the_promise_exactly():
    for k, scale in ((5, Fraction(2)), (3, Fraction(8)), (10, Fraction(1, 2))):
        t = threshold(k, scale, 0.05)
        assert laplace_tail(t - (k - 1), scale) <= 0.05  # a group of k-1 passes with probability <= beta
        assert laplace_tail(t - 1 - (k - 1), scale) > 0.05 or t == k  # and T is the least such


def test_threshold_on_a_sum_of_noises_keeps_the_promise():
    """The zone gate adds the dwell histogram's noised buckets: its threshold is on the sum's tail."""
    rng = random.Random(3)
    for scale, parts in ((Fraction(1), 3), (Fraction(2), 4)):
        t = threshold(5, scale, 0.05, parts) - 4  # the noise a group of k - 1 = 4 needs to pass
        draws = np.array([sum(discrete_laplace(scale, rng) for _ in range(parts)) for _ in range(20_000)])
        assert (draws >= t).mean() <= 0.05 + 0.005
        assert (draws >= t - 1).mean() > 0.05 - 0.005  # and it is the least such
        assert t > threshold(5, scale, 0.05) - 4  # wider than one draw's


def test_the_crossing_cap_follows_the_window_unless_set(tmp_path):
    """max_crossings = 0 (the default) derives the cap from the window: 2 under five minutes, 4 from five
    minutes; a set value is kept; the flow records state the cap in force as their sensitivity."""
    assert PrivacyConfig(window_s=60).crossing_cap == 2
    assert PrivacyConfig(window_s=299).crossing_cap == 2
    assert PrivacyConfig(window_s=300).crossing_cap == 4
    assert PrivacyConfig(window_s=900).crossing_cap == 4
    assert PrivacyConfig(window_s=60, max_crossings=3).crossing_cap == 3
    with pytest.raises(ValueError, match="max_crossings"):
        PrivacyConfig(max_crossings=-1).validate()
    an, out, _, _ = make(tmp_path, k=1, epsilon=1.0, daily_epsilon=1000)
    run_window(an, people_west=3, people_east=3, crossers=3)
    flow = [r for r in out if r["metric"] == "line_flow"]
    assert flow and all(r["sensitivity"] == 2 for r in flow)

def test_contributions_are_bounded(tmp_path):
    an, out, _, _ = make(tmp_path, k=1, epsilon=1.0, daily_epsilon=1000, max_crossings=2, max_zones=1)
    an._noisy = lambda value, sensitivity, eps: int(value)  # DP on (bounds apply), noise off to see them
    an._passes = lambda noisy, sensitivity, eps, k, parts=1: noisy >= k
    for s in range(120):
        # one person runs back and forth across the line ten times: counts for 2 crossings at most
        x = -1.0 if (s // 6) % 2 == 0 else 1.0
        cross = [Crossing(7, "mid", "-" if x > 0 else "+")] if s % 6 == 0 and s else []
        an(tick(s * 0.5, {7: (x, 0.0)}, cross))
    an.close_window()
    flow = next(r for r in out if r["metric"] == "line_flow")
    assert sum(v for v in flow["values"] if v) == 2
    visitors = {r["zone"]: r["values"][0] for r in out if r["metric"] == "occupancy" and r["zone"] != "*"}
    assert sum(visitors.values()) == 1  # in both zones, counted in one (max_zones = 1)
    stated = [x for r in out for x in (r["sensitivity"] if isinstance(r["sensitivity"], list) else [r["sensitivity"]])]
    assert min(stated) > 0
    occ = next(r for r in out if r["metric"] == "occupancy")
    # visitors and peak: 1 person; mean: the cap over the window's 60 samples, the cap being the least
    # candidate (15 s, a quarter of the minute), as one person beyond it is within the rule's tail
    assert occ["sensitivity"] == [1, 0.25, 1]


def test_budget_is_spent_then_refused_and_a_restart_does_not_refresh_it(tmp_path):
    an, out, acc, audits = make(tmp_path, k=1, epsilon=1.0, daily_epsilon=2.0)
    for w in range(4):
        run_window(an, 10, 10, start=w * 60.0)
    windows_released = {r["window_start"] for r in out if r["metric"] == "occupancy"}
    assert windows_released == {0, 60}  # 2 of epsilon 1 fit the day's 2
    assert ("budget_exhausted", {"stream": "occupancy", "spent": "2", "budget": "2"}) in audits
    acc.close()
    an2, out2, acc2, _ = make(tmp_path, k=1, epsilon=1.0, daily_epsilon=2.0)  # the device reboots
    run_window(an2, 10, 10, start=300.0)
    assert not [r for r in out2 if r["metric"] == "occupancy"]
    run_window(an2, 10, 10, start=86_400.0)  # the next UTC day has a fresh budget
    assert [r for r in out2 if r["metric"] == "occupancy"]
    assert acc2.status(86_400.0)["occupancy"]["spent"] == "1"


def test_accountant_refuses_nonsense(tmp_path):
    acc = Accountant(tmp_path / "b.sqlite", {"occupancy": 1.0})
    with pytest.raises(BudgetError):
        acc.charge("occupancy", 0, 0.0)
    with pytest.raises(BudgetError):
        acc.charge("nope", 0.1, 0.0)
    assert acc.charge("occupancy", 0.6, 0.0).granted
    refused = acc.charge("occupancy", 0.6, 1.0)
    assert not refused.granted and refused.remaining == Fraction(2, 5)


def test_bad_privacy_config_is_named():
    with pytest.raises(ValueError, match="window_s"):
        PrivacyConfig(window_s=10).validate()
    with pytest.raises(ValueError, match="occupancy_split"):
        PrivacyConfig(occupancy_split=(0.5, 0.6)).validate()


def test_privacy_bench_ceiling_is_the_truncation_loss_plus_the_noise():
    """bench.privacy's ceiling: one person for 200 s in a 900 s window. With cap 60 s and epsilon 1000 the
    noise is nil and the loss is the 140 s cut: accuracy 60/200; with cap 240 nothing is cut."""
    from bench.privacy import Scene, ceiling

    geo = Geometry(GeometryConfig(zones=(ZoneConfig("site", ((-10, -10), (10, -10), (10, 10), (-10, 10))),)))
    sc = Scene("one", [tick(float(s), {1: (0.0, 0.0)}) for s in range(200)], geo)
    assert "30.0%" in ceiling([sc], 900, epsilon=1000.0, caps=(60,))
    assert "100.0%" in ceiling([sc], 900, epsilon=1000.0, caps=(60, 240))
    assert "(240 s)" in ceiling([sc], 900, epsilon=1000.0, caps=(60, 240))


def test_presence_cap_follows_the_noised_dwell_histogram():
    """The cap is the least candidate that at most ceil(3.5 / e_mean) people stayed beyond (5 at 0.8), from
    the noised histogram alone; the most is presence_cap_s, and never more than the window's samples."""
    from firmware.privacy.analytics import fine_edges, presence_cap

    cfg = PrivacyConfig()
    edges = fine_edges(cfg)
    assert edges == [30.0, 60.0, 120.0, 240.0, 480.0]
    e = Fraction(4, 5)
    assert presence_cap(cfg, edges, [50, 2, 1, 0, 0, 0], e, 900) == 30  # 3 beyond 30 s
    assert presence_cap(cfg, edges, [50, 10, 3, 1, 0, 0], e, 900) == 60  # 14 beyond 30 s, 4 beyond 60 s
    assert presence_cap(cfg, edges, [50, 10, 10, 10, 10, 10], e, 900) == 480  # many linger: the most
    assert presence_cap(cfg, edges, [50, 10, 10, 10, 10, 10], e, 100) == 100  # a short window
    assert presence_cap(cfg, edges, [50, 10, 10, 10, 10, 10], Fraction(1, 10), 900) == 120  # tail 35 at e=0.1
    # the allowance for noise: 14 beyond 30 s is within 5 + sqrt(20 * 5 buckets) = 15
    assert presence_cap(cfg, edges, [50, 10, 3, 1, 0, 0], e, 900, bucket_var=20.0) == 30


def test_a_site_without_zones_or_lines_releases_the_heatmap_alone_and_pays_for_nothing_else(tmp_path):
    config = PrivacyConfig(window_s=60, budget_file=str(tmp_path / "budget.sqlite"), daily_epsilon=100)
    acc = Accountant(config.budget_file, config.budgets())
    out: list[dict] = []
    audits: list = []
    an = Analytics(config, Geometry(GeometryConfig()), acc, out.extend, rng=random.Random(0),
                   audit=lambda event, t, **kw: audits.append((event, kw)))
    run_window(an, people_west=30, people_east=30)
    assert {r["metric"] for r in out} == {"heatmap"}
    assert [kw["stream"] for event, kw in audits if event == "budget_spent"] == ["heatmap"]

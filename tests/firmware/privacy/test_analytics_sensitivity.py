"""The sensitivity each aggregate record states, as a property: for any window of people and any one of them
left out (neighbouring datasets: one person's every sample, crossing and heat cell removed), the statistics
the noise is added to move by at most the stated L1 sensitivity. The occupancy mean's people-seconds move by
at most the presence cap in force (summed over the zones: a person adds at most `cap` samples in all zones
together), so the released mean moves by at most cap / samples people, at most 1 per window whatever its
length; the peak and every dwell bucket by at most max_zones in all; flow by at most crossing_cap; the heatmap
by at most heat_cap_s. The cap itself is read off the noised dwell histogram (post-processing), so the bound
is checked for every cap the rule can pick."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.config.privacy import PrivacyConfig
from firmware.config.sensing import GeometryConfig, LineConfig, ZoneConfig
from firmware.privacy.accountant import Accountant
from firmware.privacy.analytics import Analytics, fine_edges
from firmware.sensing.geometry import Crossing, Geometry
from firmware.sensing.loop import TickResult
from firmware.sensing.quantize import GroundState

GEO = Geometry(GeometryConfig(
    zones=(ZoneConfig("west", ((-10, -10), (0, -10), (0, 10), (-10, 10))),
           ZoneConfig("east", ((0, -10), (10, -10), (10, 10), (0, 10)))),
    lines=(LineConfig("mid", (0, -10), (0, 10)),),
))
PLACES = (-5.0, 5.0, 50.0, None)  # west, east, in view but in no zone, not in view

# one person: a place per tick (2 Hz), in stays of 1 to 40 ticks, and the ticks at which they cross the line
stays = st.lists(st.tuples(st.sampled_from(PLACES), st.integers(1, 40)), min_size=1, max_size=4)
person = st.tuples(stays.map(lambda runs: [place for place, n in runs for _ in range(n)]),
                   st.lists(st.integers(0, 159), max_size=8))


def feed(tmp_path, people: dict[int, tuple[list, list]], ticks: int, **cfg) -> tuple[Analytics, list[dict]]:
    out: list[dict] = []
    config = PrivacyConfig(window_s=60, budget_file=str(tmp_path / f"b{random.random()}.sqlite"),
                           daily_epsilon=1000, k=1, **cfg)
    an = Analytics(config, GEO, Accountant(config.budget_file, config.budgets()), out.extend,
                   rng=random.Random(0))
    for i in range(ticks):  # every tick happens whoever is in view: the samples are the sensor's, not people's
        here = {pid: path[i] for pid, (path, _) in people.items() if i < len(path) and path[i] is not None}
        ids = np.array(sorted(here), np.int64)
        xy = np.array([[here[p], 0.0] for p in sorted(here)], float).reshape(-1, 2)
        cross = [Crossing(pid, "mid", "+" if (i + pid) % 2 else "-") for pid, (_, at) in people.items()
                 if i in at]
        an(TickResult(i * 0.5, [], cross, GroundState(ids, xy, np.zeros_like(xy), np.full(len(ids), 1.7))))
    return an, out


def statistics(an: Analytics, cap: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the occupancy and dwell streams noise, before noise, at a given presence cap: per zone the
    people-seconds (the mean times the samples), the peak, and the dwell histogram on the fine edges."""
    w = an._w
    assert w is not None
    allowed = an._bounded_zones(w)
    per_sample = an._per_sample(w, allowed, cap)
    dwell = an._true_dwell(w, allowed, fine_edges(an.config))
    return (np.array([per_sample[z].sum() for z in an.zones]), np.array([per_sample[z].max() for z in an.zones]),
            np.array([dwell[z] for z in an.zones]))


def released(an: Analytics) -> tuple[dict, dict]:
    """Flow and heatmap values as released with the bounds on and the noise off (every value released)."""
    an._noisy = lambda value, sensitivity, eps: int(value)  # type: ignore[method-assign]
    an._passes = lambda noisy, sensitivity, eps, k, parts=1: True  # type: ignore[method-assign]
    out: list[dict] = []
    an.emit = out.extend
    an.close_window()
    flow = {(r["zone"], d): v for r in out if r["metric"] == "line_flow" for d, v in zip("+-", r["values"],
                                                                                       strict=True)}
    heat = {r["zone"]: r["values"][0] for r in out if r["metric"] == "heatmap"}
    return flow, heat


def l1(a: dict, b: dict) -> int:
    return sum(abs(a.get(key, 0) - b.get(key, 0)) for key in {*a, *b})


@settings(max_examples=100, deadline=None)
@given(people=st.lists(person, min_size=1, max_size=6), leave=st.integers(0, 5), max_zones=st.integers(1, 2),
       caps=st.lists(st.integers(1, 40), min_size=1, max_size=3))
def test_one_person_moves_each_statistic_by_at_most_its_stated_sensitivity(tmp_path_factory, people, leave,
                                                                           max_zones, caps):
    tmp = tmp_path_factory.mktemp("sens")
    everyone = {pid: p for pid, p in enumerate(people)}
    gone = leave % len(people)
    others = {pid: p for pid, p in everyone.items() if pid != gone}
    ticks = max(len(path) for path, _ in people)
    cfg = {"max_zones": max_zones}
    full, _ = feed(tmp, everyone, ticks, **cfg)
    less, _ = feed(tmp, others, ticks, **cfg)
    assert full._w is not None and less._w is not None
    samples = full._w.samples
    assert less._w.samples == samples  # the samples are public: the same without the person
    mz = min(max_zones, len(GEO.config.zones))
    for cap in [*caps, None]:  # None: no cap (then a whole window's samples)
        (s1, p1, d1), (s0, p0, d0) = statistics(full, cap), statistics(less, cap)
        bound = samples if cap is None else min(cap, samples)
        assert np.abs(s1 - s0).sum() <= bound  # the mean moves by at most bound / samples <= 1 person
        assert np.abs(p1 - p0).sum() <= mz
        assert np.abs(d1 - d0).sum() <= mz
    flow1, heat1 = released(full)
    flow0, heat0 = released(less)
    assert l1(flow1, flow0) <= full.config.crossing_cap
    assert l1(heat1, heat0) <= full.config.heat_cap_s


def test_the_stated_mean_sensitivity_is_the_cap_over_the_samples(tmp_path):
    """The record states what the property above bounds: the mean's sensitivity is cap / samples, one
    person at most, and the occupancy stream's epsilon goes to the mean and the peak by occupancy_split."""
    people = {pid: ([-5.0] * 120, []) for pid in range(8)}
    an, out = feed(tmp_path, people, 120, presence_cap_s=30, epsilon=1.0)
    an.close_window()
    occ = next(r for r in out if r["metric"] == "occupancy" and r["zone"] == "west")
    samples = 60
    assert occ["sensitivity"][1] <= 30 / samples
    assert occ["sensitivity"][0] == occ["sensitivity"][2] == 2  # visitors, peak: max_zones (2) zones

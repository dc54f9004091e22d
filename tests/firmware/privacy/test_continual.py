"""The binary-tree mechanism for running totals (firmware.privacy.continual): its error bound, its sums, that
no block is noised twice, the budget it charges, and a restart that resumes without releasing a step again."""

from __future__ import annotations

import json
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.config.privacy import PrivacyConfig
from firmware.config.sensing import GeometryConfig, LineConfig, ZoneConfig
from firmware.errors import ConfigError
from firmware.privacy.accountant import DAY_S, Accountant
from firmware.privacy.audit import AuditLog
from firmware.privacy.continual import ContinualRelease, Tree, block_count, error_bound, levels
from firmware.schemas import validate
from firmware.sensing.geometry import Crossing, Geometry
from firmware.sensing.loop import TickResult
from firmware.sensing.quantize import GroundState

GEO = Geometry(GeometryConfig(
    zones=(ZoneConfig("west", ((-10, -10), (0, -10), (0, 10), (-10, 10))),
           ZoneConfig("east", ((0, -10), (10, -10), (10, 10), (0, 10)))),
    lines=(LineConfig("mid", (0, -10), (0, 10)),),
))
DAY0 = 20_000 * DAY_S  # some UTC midnight


def tick(wall: float, people: dict[int, tuple[float, float]], crossings=()) -> TickResult:
    ids = np.array(sorted(people), np.int64)
    xy = np.array([people[i] for i in sorted(people)], float).reshape(-1, 2)
    return TickResult(wall, [], list(crossings), GroundState(ids, xy, np.zeros_like(xy), np.full(len(ids), 1.7)))


def cfg(**kw) -> PrivacyConfig:
    base = {"tree_enabled": True, "tree_step_s": 60, "tree_epsilon": 1.0, "k": 5}
    return PrivacyConfig(**{**base, **kw})


def sink(tmp_path, c: PrivacyConfig, seed: int = 0, ledger: AuditLog | None = None):
    acc = Accountant(tmp_path / "budget.sqlite", c.budgets(), ledger=ledger)
    out: list[dict] = []
    events: list[tuple[str, dict]] = []
    s = ContinualRelease(c, GEO, acc, out.extend, tmp_path / "tree.json", rng=random.Random(seed),
                         audit=lambda e, t, **f: events.append((e, f)))
    return s, acc, out, events


def feed_minutes(s: ContinualRelease, minutes: range, crossers: dict[int, int]) -> None:
    """Each minute m: crossers[m] people walk west to east across `mid` (one crossing each), at 1 Hz."""
    for m in minutes:
        n = crossers.get(m, 0)
        for sec in range(0, 60, 10):
            wall = DAY0 + m * 60 + sec
            people = {1000 * m + j: (-1.0 if sec < 30 else 1.0, 0.0) for j in range(n)}
            cross = [Crossing(1000 * m + j, "mid", "+") for j in range(n)] if sec == 30 else []
            s(tick(wall, people, cross))


# -- the tree alone ------------------------------------------------------------------------------------------

@given(st.lists(st.lists(st.integers(0, 50), min_size=3, max_size=3), min_size=1, max_size=300))
@settings(max_examples=60, deadline=None)
def test_without_noise_the_blocks_sum_to_the_true_count(steps) -> None:
    tree = Tree(3, Fraction(1), 1440)
    truth = [0, 0, 0]
    for x in steps:
        tree.add(x, random.Random(0))
        truth = [a + b for a, b in zip(truth, x, strict=True)]
        assert tree.exact_total() == truth  # the closed blocks tile steps 1..t exactly


@given(st.integers(1, 1440))
@settings(max_examples=40, deadline=None)
def test_no_block_is_noised_twice_and_each_step_is_in_at_most_L_blocks(t) -> None:
    tree = Tree(1, Fraction(1), 1440)
    for _ in range(t):
        tree.add([1], random.Random(1))
    assert len(tree.drawn) == len(set(tree.drawn)) == t  # one block closes per step, never the same one
    L = levels(1440)
    for step in range(1, t + 1):  # blocks (level j, index m) cover steps (m-1) 2^j + 1 .. m 2^j
        holding = [(j, m) for j, m in tree.drawn if (m - 1) << j < step <= m << j]
        assert len(holding) <= L
    assert block_count(t) <= L


@given(st.lists(st.integers(0, 30), min_size=1, max_size=400), st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None)
def test_released_running_total_error_is_within_the_stated_bound(steps, seed) -> None:
    """Every released running total is within error_bound(popcount(t), scale, delta) of the truth; with
    delta = 1e-6 a seeded run breaking it would be a one-in-a-million event per value, not noise."""
    scale = Fraction(2 * levels(1440))  # sensitivity 2, epsilon 1
    tree = Tree(1, scale, 1440)
    rng = random.Random(seed)
    truth = 0
    for x in steps:
        total = tree.add([x], rng)[0]
        truth += x
        assert abs(total - truth) <= error_bound(block_count(tree.t), float(scale), 1e-6)


def test_error_bound_grows_with_log_t_not_t() -> None:
    scale = float(2 * levels(1440))
    worst = max(error_bound(block_count(t), scale, 0.05) for t in range(1, 1441))
    one = error_bound(1, scale, 0.05)
    assert worst <= one * levels(1440) ** 0.5 * 1.5  # at most sqrt(L) blocks' worth, far from T
    # against summing 1440 per-step releases of sensitivity 2: its 95% error is about 1.96 sqrt(1440 * 8)
    assert error_bound(1, scale, 0.05) > 0


# -- the sink: budget, gate, restart ---------------------------------------------------------------------------

def test_running_totals_follow_the_flow_and_charge_each_step(tmp_path) -> None:
    c = cfg()
    s, acc, out, _ = sink(tmp_path, c)
    crossers = {m: 10 for m in range(30)}
    feed_minutes(s, range(30), crossers)
    s.close()
    flow = [r for r in out if r["metric"] == "flow_total"]
    assert len(flow) == 30
    for r in out:
        validate(r)  # the schema takes them
    scale = float(s.scale("flow_total"))
    for m, r in enumerate(flow):
        assert r["window_start"] == DAY0 + m * 60 and r["since"] == DAY0 and r["mechanism"] == "binary_tree"
        plus = r["values"][0]
        if plus is not None:
            assert abs(plus - 10 * (m + 1)) <= error_bound(block_count(m + 1), scale, 1e-6)
    assert flow[-1]["values"][0] is not None  # 300 crossings pass the gate
    assert acc.spent("flow_total", DAY0) == Fraction(30) == acc.spent("visitors_total", DAY0)


def test_gate_holds_a_total_below_k(tmp_path) -> None:
    s, _, out, _ = sink(tmp_path, cfg(k=5))
    feed_minutes(s, range(200), {})  # nobody: the totals stay at 0 (+ noise)
    s.close()
    shown = [v for r in out if r["metric"] == "flow_total" for v in r["values"]]
    assert len(shown) == 400 and sum(v is not None for v in shown) <= 2 * 0.05 * 400  # beta = 0.05 each


def test_restart_resumes_and_never_releases_a_step_again(tmp_path) -> None:
    c = cfg()
    s, acc, out, _ = sink(tmp_path, c, seed=1)
    feed_minutes(s, range(10), {m: 8 for m in range(10)})
    s.close()
    acc.close()
    saved = json.loads((tmp_path / "tree.json").read_text())
    assert saved["last_step"] == DAY0 // 60 + 9
    s2, acc2, out2, events2 = sink(tmp_path, c, seed=2)
    assert s2.state.trees["flow_total"].noisy == saved["trees"]["flow_total"]["noisy"]  # the same blocks
    feed_minutes(s2, range(8, 15), {m: 8 for m in range(15)})  # minutes 8 and 9 again (say, the clock stepped)
    s2.close()
    starts = [r["window_start"] for r in out2 if r["metric"] == "flow_total"]
    assert starts == [DAY0 + m * 60 for m in range(10, 15)]  # 8 and 9 not again
    assert ("continual_withheld", {"stream": "flow_total", "day": DAY0 // DAY_S,
                                   "reason": "step already released"}) in events2
    assert acc2.spent("flow_total", DAY0) == Fraction(15)  # each step charged once
    seen = out[:2 * 10] + out2
    assert len({(r["metric"], r["zone"], r["window_start"]) for r in seen}) == len(seen)
    # blocks closed by the second run are new ones: steps 11..15 in the second
    assert [i for _, i in s2.state.trees["flow_total"].drawn] and s2.state.trees["flow_total"].t == 15


def test_a_deleted_state_does_not_refresh_the_tree(tmp_path) -> None:
    """Deleting the state would re-noise today's blocks: the budget shows today's spend, so nothing more of
    the day is released, and it is audited."""
    c = cfg()
    log = AuditLog(tmp_path / "audit.jsonl")
    s, acc, out, _ = sink(tmp_path, c, ledger=log)
    feed_minutes(s, range(5), {m: 6 for m in range(5)})
    s.close()
    acc.close()
    (tmp_path / "tree.json").unlink()
    s2, acc2, out2, events2 = sink(tmp_path, c, ledger=AuditLog(tmp_path / "audit.jsonl"))
    feed_minutes(s2, range(5, 10), {m: 6 for m in range(10)})
    s2.close()
    assert out2 == []
    assert [f["reason"] for e, f in events2 if e == "continual_withheld"] == ["state behind budget"] * 2
    assert acc2.spent("flow_total", DAY0) == Fraction(5)  # nothing charged for what was not released
    # the next day starts afresh
    feed_minutes(s2, range(1440, 1442), {})
    s2.close()
    assert {r["window_start"] for r in out2} == {DAY0 + DAY_S, DAY0 + DAY_S + 60}


def test_untrusted_time_releases_nothing_and_charges_nothing(tmp_path) -> None:
    c = cfg()
    acc = Accountant(tmp_path / "budget.sqlite", c.budgets())
    out: list[dict] = []
    s = ContinualRelease(c, GEO, acc, out.extend, tmp_path / "tree.json", rng=random.Random(0),
                         trusted=lambda: False)
    feed_minutes(s, range(3), {m: 9 for m in range(3)})
    s.close()
    assert out == [] and acc.spent("flow_total", DAY0) == 0


def test_budget_refusal_adds_nothing_to_the_tree(tmp_path) -> None:
    c = cfg(daily_epsilon=0.0)
    acc = Accountant(tmp_path / "budget.sqlite", {**c.budgets(), "flow_total": Fraction(3)})
    out: list[dict] = []
    s = ContinualRelease(c, GEO, acc, out.extend, tmp_path / "tree.json", rng=random.Random(0))
    feed_minutes(s, range(6), {m: 9 for m in range(6)})
    s.close()
    assert len([r for r in out if r["metric"] == "flow_total"]) == 3
    assert s.state.trees["flow_total"].exact_total() == [27, 0]  # the refused steps' 27 crossings are not in it
    assert acc.spent("flow_total", DAY0) == 3


def test_tree_config_is_range_checked() -> None:
    from firmware.config.loader import build

    for bad in ({"tree_step_s": 7}, {"tree_step_s": 70}, {"tree_step_s": 7200}, {"tree_epsilon": 0},
                {"tree_epsilon": float("nan")}, {"tree_crossing_cap": 0}, {"tree_crossing_cap": 101}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            build(PrivacyConfig, bad, "privacy")
    c = build(PrivacyConfig, {"tree_enabled": True, "tree_step_s": 300, "tree_epsilon": 0.5}, "privacy")
    assert c.budgets()["flow_total"] == Fraction(1, 2) * 288
    assert "flow_total" not in PrivacyConfig().budgets()  # off by default: no new streams


def test_the_dpia_states_the_running_totals_composition() -> None:
    from firmware.config import parse
    from firmware.privacy.dpia import generate_dpia

    off = generate_dpia(parse("[privacy]\nepsilon = 0.5\n"))
    assert "| aggregates (occupancy, flow, dwell, heatmap) |" in off and "binary-tree" not in off
    on = generate_dpia(parse("[privacy]\ntree_enabled = true\ntree_step_s = 300\ntree_epsilon = 0.25\n"))
    row = next(line for line in on.splitlines() if "binary-tree" in line)
    assert "0.25 per step and stream" in row and "at most 9 noised blocks" in row  # 288 steps: 9 levels
    assert "72 per stream (288 steps" in row
    assert "suspends that day's running totals" in row  # a lost state is never restarted with fresh noise

"""The tree's epsilon split over its levels (`tree_level_weight`, firmware.privacy.continual.level_scales): the
privacy of one step (exactly at most epsilon, whatever the split), each block noised at its level's scale, the
k gate never below the exact one, the totals' correctness and stated error, the records a reader can combine,
and the reader's combination still least squares with a variance per level."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import firmware.privacy.continual as continual
from firmware.config.privacy import PrivacyConfig
from firmware.privacy.combine import Combiner, blocks, combine_records, monotone, tree_scales
from firmware.privacy.continual import Tree, error_bound_of, gate_bar, level_scales, levels
from firmware.privacy.dp import laplace_pmf, laplace_var
from firmware.schemas import validate
from tests.firmware.privacy.test_continual import DAY0, cfg, feed_minutes, sink

STEPS = st.sampled_from([8, 24, 96, 288, 1440, 8640])  # steps of a day: 3 h to 10 s
EPS = st.fractions(min_value=Fraction(1, 1000), max_value=10, max_denominator=1000).filter(lambda e: e > 0)


@given(st.integers(1, 6), EPS, STEPS, st.integers(0, 2))
@settings(max_examples=80, deadline=None)
def test_the_levels_together_spend_at_most_epsilon(sensitivity, eps, steps, weight) -> None:
    """A step is in one block per level, moved by at most `sensitivity`: the loss is sum_j sensitivity / scale_j,
    which must be at most epsilon, exactly, and not far under it (epsilon paid for is not thrown away)."""
    scales = level_scales(sensitivity, eps, steps, weight)
    assert len(scales) == levels(steps) and all(isinstance(b, Fraction) and b > 0 for b in scales)
    loss = sum(Fraction(sensitivity) / b for b in scales)
    assert loss <= eps
    assert loss >= eps * Fraction(97, 100)  # rounding up to 1/64 costs little
    if weight == 0:
        assert scales == (Fraction(sensitivity * levels(steps)) / eps,) * levels(steps)  # Chan, Shi and Song
    else:
        assert list(scales) == sorted(scales)  # small blocks (the day's first steps) get the least noise
        assert scales[0] < Fraction(sensitivity * levels(steps)) / eps < scales[-1]


def test_the_split_minimizes_its_objective() -> None:
    """weight p: no other split of the same epsilon has a smaller sum_t t^-p Var(total(t)) (Var ~ scale^2)."""
    steps, rng = 1440, np.random.default_rng(0)
    t = np.arange(1, steps + 1)

    def objective(scales, p) -> float:
        return float(sum(np.sum(((t >> j) & 1) * t ** -float(p)) * float(b) ** 2 for j, b in enumerate(scales)))

    for p in (1, 2):
        best = level_scales(2, Fraction(1), steps, p)
        for _ in range(200):  # random splits of the same epsilon
            share = rng.dirichlet(np.ones(len(best)))
            other = [2 / s for s in share]  # sum 2 / b_j = 1
            assert objective(best, p) <= objective(other, p) * 1.001
        assert objective(best, p) < objective(level_scales(2, Fraction(1), steps, 0), p)


@given(st.lists(st.integers(0, 40), min_size=1, max_size=200), st.integers(1, 200), st.integers(0, 2),
       st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_neighbouring_steps_are_epsilon_indistinguishable(counts, where, weight, seed) -> None:
    """The privacy of the released blocks, directly: change one step's count by up to the sensitivity (2) and
    feed both trees the same noise (the sampler's draws do not depend on the value); the blocks then differ
    by the change only, and the log-likelihood ratio of the two outputs, sum over blocks of |difference| /
    its level's scale, is at most epsilon."""
    where = where % len(counts)
    eps, sens = Fraction(1), 2
    scales = level_scales(sens, eps, 1440, weight)
    other = list(counts)
    other[where] += sens
    loss = Fraction(0)
    ta, tb = Tree(1, scales, 1440), Tree(1, scales, 1440)
    for i, (x, y) in enumerate(zip(counts, other, strict=True)):
        ta.add([x], random.Random(seed + i))
        tb.add([y], random.Random(seed + i))
        level = (ta.t & -ta.t).bit_length() - 1  # the one block noised at this step
        loss += Fraction(abs(ta.noisy[level][0] - tb.noisy[level][0])) / scales[level]
    assert loss <= eps
    assert tb.exact_total()[0] - ta.exact_total()[0] == sens  # the change is in the released total


def test_each_block_is_noised_at_its_levels_scale(monkeypatch) -> None:
    drawn: list[Fraction] = []
    real = continual.discrete_laplace
    monkeypatch.setattr(continual, "discrete_laplace", lambda scale, rng: drawn.append(scale) or real(scale, rng))
    scales = level_scales(2, Fraction(1), 1440, 2)
    tree = Tree(2, scales, 1440)
    for _ in range(300):
        tree.add([1, 1], random.Random(0))
    assert drawn == [scales[level] for level, _ in tree.drawn for _ in range(2)]  # two values per block


def _exact_bar(k: int, scales, beta: float, t: int) -> int:
    """The k gate from the exact convolution (direct, in float64 sums of positive terms)."""
    m = int(60 * float(max(scales))) + 1
    total = np.ones(1)
    for j in range(t.bit_length()):
        if t >> j & 1:
            total = np.convolve(total, laplace_pmf(np.arange(-m, m + 1), float(scales[j])))
    mid = len(total) // 2
    right = np.cumsum(total[::-1])[::-1][mid:]
    return k - 1 + next(a for a in range(1, len(right)) if right[a] <= beta)


@given(st.integers(1, 95), st.sampled_from([0.5, 0.05, 1e-3, 1e-6]), st.integers(1, 9), st.integers(1, 2))
@settings(max_examples=40, deadline=None)
def test_the_gate_is_never_below_the_exact_one(t, beta, k, weight) -> None:
    """A running total below k passes the gate with probability at most beta: the bar is at least the exact
    one (and at most one above it: the FFT's margin only)."""
    scales = level_scales(1, Fraction(2), 96, weight)  # small scales: the exact convolution is quick
    exact = _exact_bar(k, scales, beta, t)
    assert exact <= gate_bar(k, scales, beta, t) <= exact + 1


@given(st.lists(st.integers(0, 30), min_size=1, max_size=300), st.integers(0, 2**32 - 1))
@settings(max_examples=30, deadline=None)
def test_totals_are_exact_without_noise_and_within_the_stated_error(steps, seed) -> None:
    scales = level_scales(2, Fraction(1), 1440, 2)
    tree, rng, truth = Tree(1, scales, 1440), random.Random(seed), 0
    for x in steps:
        total = tree.add([x], rng)[0]
        truth += x
        assert tree.exact_total() == [truth]
        assert abs(total - truth) <= error_bound_of(scales, tree.t, 1e-6)


def test_records_say_the_split_and_the_reader_uses_it(tmp_path) -> None:
    c = cfg(tree_level_weight=2)
    s, acc, out, _ = sink(tmp_path, c)
    feed_minutes(s, range(20), {m: 12 for m in range(20)})
    s.close()
    flow = [r for r in out if r["metric"] == "flow_total"]
    assert len(flow) == 20 and all(r["level_weight"] == 2 for r in flow)
    for r in out:
        validate(r)
    assert tree_scales(flow[0]) == s.scales("flow_total") == level_scales(2, Fraction(1), 1440, 2)
    assert acc.spent("flow_total", DAY0) == Fraction(20)  # one tree_epsilon per step, as evenly
    with pytest.raises(ValueError):
        s.scale("flow_total")  # no single scale to misuse
    series = combine_records(flow)[(DAY0, "mid", "+")]
    assert all(e is None or e[1] > 0 for e in series)
    (tmp_path / "even").mkdir()
    s0, _, out0, _ = sink(tmp_path / "even", cfg())
    feed_minutes(s0, range(2), {0: 3, 1: 3})
    s0.close()
    assert all("level_weight" not in r for r in out0)  # the evenly split tree's records are as before


def test_the_config_takes_only_known_splits() -> None:
    for bad in (3, -1, 1.5, True):
        with pytest.raises(ValueError):
            PrivacyConfig(tree_level_weight=bad).validate()
    PrivacyConfig(tree_level_weight=2).validate()


def test_the_reader_is_least_squares_with_a_variance_per_level() -> None:
    rng = np.random.default_rng(3)
    n = 40
    level_var = [laplace_var(b) for b in level_scales(2, Fraction(1), 1440, 2)]
    totals = [int(v) for v in np.cumsum(rng.integers(20, 40, n)) + rng.integers(-5, 5, n)]
    minutes = [None if rng.random() < 0.3 else int(v) for v in rng.integers(10, 50, n)]
    mv = laplace_var(Fraction(2))
    comb = Combiner(totals, level_var, minutes, mv)
    nodes = blocks(totals)
    for t in range(1, n + 1):
        rows, obs, w = [], [], []
        for u in range(1, t + 1):
            if u in nodes:
                r = np.zeros(t)
                r[u - (u & -u):u] = 1
                rows.append(r), obs.append(nodes[u]), w.append(1 / level_var[(u & -u).bit_length() - 1])
            if minutes[u - 1] is not None:
                r = np.zeros(t)
                r[u - 1] = 1
                rows.append(r), obs.append(minutes[u - 1]), w.append(1 / mv)
        h, y, wm = np.array(rows), np.array(obs), np.diag(w)
        cov = np.linalg.inv(h.T @ wm @ h)
        value, var = comb.at(t)
        assert value == pytest.approx(float((cov @ h.T @ wm @ y).sum()), abs=1e-6)
        assert var == pytest.approx(float(np.ones(t) @ cov @ np.ones(t)))


EST = st.one_of(st.none(), st.tuples(st.floats(-50, 500), st.floats(0.5, 100)))


@given(st.lists(EST, min_size=1, max_size=60), st.booleans(), st.data())
@settings(max_examples=80, deadline=None)
def test_monotone_is_non_decreasing_keeps_gaps_and_reads_no_later_step_live(series, causal, data) -> None:
    out = monotone(series, causal=causal)
    assert [e is None for e in out] == [e is None for e in series]  # no value assumed where none was given
    vals = [e[0] for e in out if e is not None]
    assert all(v >= 0 for v in vals)
    if not causal:
        assert vals == sorted(vals)  # the day's chart never falls
        return
    cut = data.draw(st.integers(0, len(series)))
    changed = series[:cut] + data.draw(st.lists(EST, min_size=len(series) - cut, max_size=len(series) - cut))
    assert monotone(changed, causal=True)[:cut] == out[:cut]  # live: nothing after step t moves step t
    for i, e in enumerate(out):  # and each live value is the isotonic fit of what came before, read at t
        if e is not None:
            prefix = [x for x in series[:i + 1] if x is not None]
            assert e[0] == pytest.approx(_last_fit(prefix), abs=1e-9)


def _last_fit(prefix) -> float:
    from scipy.optimize import isotonic_regression

    return max(0.0, float(isotonic_regression([p[0] for p in prefix], weights=[1 / p[1] for p in prefix]).x[-1]))

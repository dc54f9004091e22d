"""The reader's estimate of running crossings (firmware.privacy.combine): the tree alone is already the least-squares
estimate; tree and minutes together are the least-squares estimate, unbiased, never worse than the plain tree,
read only what is released by t, and never assume a value for a suppressed minute or a withheld total."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest

from firmware.privacy.combine import Combiner, blocks, combine_records, minute_scale, tree_scale
from firmware.privacy.continual import Tree, block_count
from firmware.privacy.dp import discrete_laplace, laplace_var

TV, MV = 9.0, 2.0  # block and minute variances (any positive numbers: the estimator is linear)


def running(counts: list[float]) -> list[float]:
    return list(np.cumsum(counts))


def tree_totals(counts: list[float], noise: list[float]) -> list[float]:
    """The plain tree's running totals from per-step counts and one noise value per block (block u: noise[u-1])."""
    out = []
    for t in range(1, len(counts) + 1):
        total, end = 0.0, 0
        for level in reversed(range(t.bit_length())):
            if t >> level & 1:
                end += 1 << level
                total += sum(counts[end - (1 << level):end]) + noise[end - 1]
        out.append(total)
    return out


def least_squares(t: int, nodes: dict[int, float], minutes: list[float | None]) -> tuple[float, float]:
    """Weighted least squares over the unknown counts 1..t from the blocks closing at 1..t and the released
    minutes: the estimate of their sum and its variance."""
    rows, obs, w = [], [], []
    for u in range(1, t + 1):
        if u in nodes:
            r = np.zeros(t)
            r[u - (u & -u):u] = 1
            rows.append(r), obs.append(nodes[u]), w.append(1 / TV)
        if minutes[u - 1] is not None:
            r = np.zeros(t)
            r[u - 1] = 1
            rows.append(r), obs.append(minutes[u - 1]), w.append(1 / MV)
    h, y, wm = np.array(rows), np.array(obs), np.diag(w)
    info = h.T @ wm @ h
    cov = np.linalg.inv(info)
    est = cov @ h.T @ wm @ y
    return float(est.sum()), float(np.ones(t) @ cov @ np.ones(t))


def test_the_tree_alone_is_already_least_squares() -> None:
    """One noised block per step: t blocks for t counts, so least squares (Honaker's passes) is the plain sum."""
    rng = np.random.default_rng(1)
    n = 45
    totals = [int(v) for v in rng.integers(100, 400, n)]
    comb = Combiner(totals, TV)
    nodes = blocks(totals)
    assert sorted(nodes) == list(range(1, n + 1))  # every block read off the released totals
    for t in range(1, n + 1):
        value, var = comb.at(t)
        ls, ls_var = least_squares(t, nodes, [None] * n)
        assert value == pytest.approx(totals[t - 1]) and value == pytest.approx(ls)
        assert var == pytest.approx(block_count(t) * TV) and var == pytest.approx(ls_var)


@pytest.mark.parametrize("suppressed", [0.0, 0.3, 0.8])
def test_tree_and_minutes_are_least_squares(suppressed) -> None:
    rng = np.random.default_rng(2)
    n = 37
    totals = [int(v) for v in np.cumsum(rng.integers(20, 40, n)) + rng.integers(-5, 5, n)]
    minutes = [None if rng.random() < suppressed else int(v) for v in rng.integers(10, 50, n)]
    comb = Combiner(totals, TV, minutes, MV)
    nodes = blocks(totals)
    for t in range(1, n + 1):
        value, var = comb.at(t)
        ls, ls_var = least_squares(t, nodes, minutes)
        assert value == pytest.approx(ls, abs=1e-6) and var == pytest.approx(ls_var)
        assert var <= block_count(t) * TV + 1e-9
        if suppressed == 0.0:
            assert var < block_count(t) * TV  # a released minute always helps


@pytest.mark.parametrize("seed", range(4))
def test_unbiased_exact_without_noise_whatever_is_withheld(seed) -> None:
    """A linear estimate is unbiased iff it is exact on noise-free values: with totals withheld (gated) and
    minutes suppressed at random, each estimate given equals the true running total."""
    rng = random.Random(seed)
    n = 70
    counts = [rng.randint(1, 30) for _ in range(n)]  # from 1: no total is 0 (a 0 may be clipped: skipped)
    true = running(counts)
    totals = [None if rng.random() < 0.3 else int(v) for v in true]
    minutes = [None if rng.random() < 0.4 else c for c in counts]
    comb = Combiner(totals, TV, minutes, MV)
    given = 0
    for t in range(1, n + 1):
        est = comb.at(t)
        if est is None:
            assert totals[t - 1] is None  # only a withheld total can be left without an estimate
            continue
        given += 1
        value, var = est
        assert value == pytest.approx(true[t - 1]), t
        if totals[t - 1] is not None:
            assert var <= block_count(t) * TV + 1e-9
    assert given > 50


def test_nothing_released_after_t_is_read() -> None:
    rng = random.Random(3)
    n = 64
    totals = [rng.randint(50, 900) for _ in range(n)]
    minutes = [rng.choice([None, rng.randint(0, 40)]) for _ in range(n)]
    full = Combiner(totals, TV, minutes, MV).series()
    for t in (1, 5, 16, 33, 63):
        cut = Combiner(totals[:t], TV, minutes[:t], MV).series()
        other = Combiner(totals[:t] + [rng.randint(0, 999) for _ in range(n - t)], TV,
                         minutes[:t] + [rng.randint(0, 99) for _ in range(n - t)], MV).series()
        assert full[:t] == cut == other[:t]


def test_suppressed_minutes_assume_no_value() -> None:
    """All minutes suppressed: the plain tree, exactly (no value assumed for them); a withheld total over a
    suppressed minute with no readable block has no estimate."""
    totals = [10, 30, 25, 70, 90, 95, 99, 140]
    comb = Combiner(totals, TV, [None] * 8, MV)
    assert [e[0] for e in comb.series()] == totals
    gated = Combiner([None, None, 25, 70], TV, [5, None, 7, 40], MV)
    assert gated.at(1) == (5.0, MV)  # the released minute
    assert gated.at(2) is None  # minute 2 suppressed, block 1..2 unreadable (total 2 withheld): no estimate
    assert gated.at(3) is not None  # total 3 released: block [3] = 25 - total(2)? unreadable; grouped with 1..2


def test_by_simulation_on_the_device_tree() -> None:
    """The device's own Tree and discrete Laplace noise, fixed seed: the combined estimate is unbiased, its
    variance is the computed one and below the plain tree's."""
    rng = random.Random(7)
    scale_t, scale_m = Fraction(6), Fraction(2)
    tv, mv = laplace_var(scale_t), laplace_var(scale_m)
    counts = [83, 60, 95, 68, 72, 62, 99, 74, 61, 86, 60, 77]  # large: no total near 0 (none clipped)
    true = running(counts)
    n, reps = len(counts), 1500
    plain_err, comb_err = np.zeros((reps, n)), np.zeros((reps, n))
    for r in range(reps):
        tree = Tree(1, scale_t, 1440)
        totals = [tree.add([c], rng)[0] for c in counts]
        minutes = [c + discrete_laplace(scale_m, rng) for c in counts]
        assert min(totals) > 0
        comb = Combiner(totals, tv, minutes, mv)
        for t in range(1, n + 1):
            plain_err[r, t - 1] = totals[t - 1] - true[t - 1]
            comb_err[r, t - 1] = comb.at(t)[0] - true[t - 1]
    comb_var = Combiner([int(v) for v in true], tv, counts, mv)
    for t in range(1, n + 1):
        expect = comb_var.at(t)[1]
        assert expect < block_count(t) * tv
        se = math.sqrt(expect / reps)
        assert abs(comb_err[:, t - 1].mean()) < 4 * se, t
        assert comb_err[:, t - 1].var() == pytest.approx(expect, rel=0.15), t
        assert comb_err[:, t - 1].var() < plain_err[:, t - 1].var(), t


def test_records_scales_and_grouping() -> None:
    day = 20_000 * 86_400
    tree = [{"metric": "flow_total", "since": day, "window_start": day + 60 * i, "window_s": 60, "zone": "mid",
             "values": [v, None], "epsilon": 1.0, "sensitivity": 2, "mechanism": "binary_tree"}
            for i, v in enumerate([40, 70, 95])]
    flow = [{"metric": "line_flow", "window_start": day + 60 * i, "window_s": 60, "zone": "mid", "values": [v, 3],
             "epsilon": 1.0, "sensitivity": 2, "mechanism": "discrete_laplace"} for i, v in enumerate([38, None, 20])]
    assert tree_scale(tree[0]) == Fraction(22) and minute_scale(flow[0]) == Fraction(2)
    out = combine_records(tree + flow)
    # "-": no total released; minutes 3, 3, 3 all released, so the minutes alone estimate it
    assert [e[0] if e else None for e in out[(day, "mid", "-")]] == [3, 6, 9]
    want = Combiner([40, 70, 95], laplace_var(Fraction(22)), [38, None, 20], laplace_var(Fraction(2))).series()
    assert out[(day, "mid", "+")] == want

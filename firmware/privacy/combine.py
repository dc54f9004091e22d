"""A reader's estimate of the day's running crossings: the released running totals (`flow_total`, binary tree,
`continual.py`) combined with the released per-minute counts of the same line and direction (`line_flow`,
`analytics.py`), by inverse-variance weighting over the tree's blocks. Pure post-processing of released records:
it reads nothing the device did not release, draws no noise and spends no epsilon; the privacy guarantee is that
of the two releases, already charged to their streams (`flow_total` and `flow`). The device keeps releasing the
same records; the cloud or a customer runs this on what they received.

The tree alone. At step t the binary mechanism of Chan, Shi and Song has noised exactly one block per step (the
block closing at step u, of length 2^(trailing zeros of u)): t noised values for t unknown per-step counts, a
square, invertible (unit lower triangular) system. So the only linear unbiased estimate of the running total from
the blocks released by t is the plain one, the sum of the popcount(t) blocks that tile 1..t: Honaker's (2015)
bottom-up and top-down passes, or least squares over the released blocks, give back exactly that (tested). The
plain tree is already variance-optimal; what it lacks is a second, independent look at the same counts.

Tree and minutes. The per-minute releases are that second look (independent noise, scale `sensitivity /
epsilon` of their records). Bottom-up over the tree's dyadic blocks (Honaker's pass, on this tree): a minute's
estimate is the inverse-variance combination of its released count and, for odd steps, its noised leaf; a block's
is its children's sum, combined with its own noised value when the tree noised it. The running total at t is the
sum of the estimates of the blocks that tile 1..t: each such block is a root (its parent closes after t), the
blocks are disjoint, their observations independent, so the sum is the best linear unbiased estimate from the
blocks and minutes released by t (tested against least squares). Only steps <= t are read: no block or minute
released later. Variances are exact, from the discrete Laplace scales the records carry (`dp.laplace_var`): the
tree's blocks have the scale of their level (`continual.level_scales`: sensitivity x levels / epsilon each,
levels = (steps in a day).bit_length(), unless the record's `level_weight` splits epsilon otherwise), a
minute's sensitivity / epsilon. No parameter is fitted.

What is released, and what is not:
- A block's noised value is read off the released totals: block(u) = total(u) - total(u - 2^tz(u)) (total(0) =
  0), known only when both totals were released. A total the device withheld (below its k gate) gives no block;
  a total of 0 may be a negative value clipped (only with the gate off) and gives none either.
- A suppressed minute (below its k threshold, value None) carries no value: it is left out, never taken as 0 or
  as anything else; its step is then known from the tree's blocks alone (infinite variance for the minute).
- A block tiling 1..t whose noised value cannot be read off is estimated in one group with the others like it:
  their noised sum is total(t) minus the known blocks, combined with the sum of their children's estimates.
- Where the device withheld the tree's running total (below its k gate), the estimate is the same sum of block
  estimates without it: from the released minutes and the blocks read off earlier totals. It is given only
  where every step of 1..t is covered by something released (finite variance); a step known from nothing
  (a suppressed minute under no readable block) leaves the running total without an estimate (None), as
  withheld. This is where the combination gains most on short clips: the tree's gate withholds early totals.
Where the tree's total is released, each combination is of the plain value with an independent estimate, so
the variance is never above the plain tree's (popcount(t) blocks). What it costs not to assume a value: one
suppressed minute leaves every block above it without a minute-side estimate up to the nearest block the tree
noised, so where many minutes are suppressed the estimate is close to the plain tree's. Caveats: the per-minute
counts cap a person's crossings per window (`crossing_cap`), the tree per step (`tree_crossing_cap`): where the
caps differ the two estimate slightly different counts (truncation, which no estimator undoes). Released values
are selected (they passed a k gate): near the gate they lean high, the same bias the plain values have.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

from firmware.privacy.dp import laplace_var

DAY_S = 86_400

Estimate = tuple[float, float]  # (value, variance); variance inf: nothing known


def _tz(u: int) -> int:
    return (u & -u).bit_length() - 1


def _mix(a: Estimate, b: Estimate) -> Estimate:
    """The inverse-variance combination of two independent unbiased estimates."""
    (x, vx), (y, vy) = a, b
    if math.isinf(vx):
        return b
    if math.isinf(vy):
        return a
    if vx == 0 or vy == 0:
        return a if vx == 0 else b
    w = vy / (vx + vy)
    return w * x + (1 - w) * y, vx * vy / (vx + vy)


def blocks(totals: Sequence[int | None]) -> dict[int, int]:
    """Step u (1-based) -> the noised value of the tree block closing at u, where the released totals give it:
    totals[u - 1] is the running total released at step u, None if withheld (or not released)."""
    def known(u: int) -> int | None:
        if u == 0:
            return 0
        v = totals[u - 1]
        return v if v is not None and v > 0 else None

    out = {}
    for u in range(1, len(totals) + 1):
        hi, lo = known(u), known(u - (1 << _tz(u)))
        if hi is not None and lo is not None:
            out[u] = hi - lo
    return out


class Combiner:
    """The running totals of one line and direction over one day: the tree's released totals and the released
    minutes, and the best linear unbiased estimate of the running total at each step from what is released
    by then. `tree_var`: the exact noise variance of one block (or one per level), `minute_var`: of one minute."""

    def __init__(self, totals: Sequence[int | None], tree_var: float | Sequence[float],
                 minutes: Sequence[int | None] | None = None, minute_var: float = math.inf) -> None:
        self.totals = list(totals)
        self.minutes = list(minutes) if minutes is not None else [None] * len(self.totals)
        if len(self.minutes) < len(self.totals):
            self.minutes += [None] * (len(self.totals) - len(self.minutes))
        levels = max(1, len(self.totals).bit_length())
        self.level_var = list(tree_var) if isinstance(tree_var, Sequence) else [float(tree_var)] * levels
        if len(self.level_var) < levels:
            raise ValueError(f"{len(self.level_var)} level variances for {len(self.totals)} steps")
        self.minute_var = minute_var
        self.nodes = blocks(self.totals)
        self._memo: dict[tuple[int, int], Estimate] = {}

    def block(self, level: int, end: int) -> Estimate:
        """The estimate of the block of 2^level steps ending at step `end`, from the observations inside it."""
        key = (level, end)
        if key in self._memo:
            return self._memo[key]
        if level == 0:
            m = self.minutes[end - 1]
            est: Estimate = (float(m), self.minute_var) if m is not None else (0.0, math.inf)
        else:
            half = 1 << (level - 1)
            (a, va), (b, vb) = self.block(level - 1, end - half), self.block(level - 1, end)
            est = (a + b, va + vb)
        if _tz(end) == level and end in self.nodes:
            est = _mix(est, (float(self.nodes[end]), self.level_var[level]))
        self._memo[key] = est
        return est

    def children(self, level: int, end: int) -> Estimate:
        """The block's estimate without its own noised value (its children's, or the minute's)."""
        if level == 0:
            m = self.minutes[end - 1]
            return (float(m), self.minute_var) if m is not None else (0.0, math.inf)
        half = 1 << (level - 1)
        (a, va), (b, vb) = self.block(level - 1, end - half), self.block(level - 1, end)
        return a + b, va + vb

    def at(self, t: int) -> Estimate | None:
        """The running total after step t (1-based) and its variance, from what is released by t; None where it
        cannot be estimated without assuming a value (the tree's total withheld and a step of 1..t known from
        nothing released)."""
        total = self.totals[t - 1]
        if total is not None and total <= 0:  # possibly clipped: the plain value, as released
            return float(total), sum(self.level_var[j] for j in range(t.bit_length()) if t >> j & 1)
        value, var = 0.0, 0.0
        group_obs, group_n, group_kids, group_var, group_noise = float(total or 0), 0, 0.0, 0.0, 0.0
        end = 0
        for level in reversed(range(t.bit_length())):
            if not t >> level & 1:
                continue
            end += 1 << level
            if end in self.nodes:
                v, w = self.block(level, end)
                value, var = value + v, var + w
                group_obs -= self.nodes[end]
            else:
                c, cv = self.children(level, end)
                group_n, group_kids, group_var = group_n + 1, group_kids + c, group_var + cv
                group_noise += self.level_var[level]
        if group_n:
            group = (group_obs, group_noise) if total is not None else (0.0, math.inf)
            v, w = _mix(group, (group_kids, group_var))
            value, var = value + v, var + w
        return None if math.isinf(var) else (value, var)

    def series(self) -> list[Estimate | None]:
        return [self.at(t) for t in range(1, len(self.totals) + 1)]


def tree_scale(record: dict[str, Any]) -> Fraction:
    """The noise scale of one block of a `flow_total` record's evenly split tree: sensitivity x levels / epsilon."""
    scales = set(tree_scales(record))
    if len(scales) != 1:
        raise ValueError("the record's tree has levels of different scales: use tree_scales")
    return scales.pop()


def tree_scales(record: dict[str, Any]) -> tuple[Fraction, ...]:
    """The noise scale of the blocks of each level of a `flow_total` record's tree, from its sensitivity,
    epsilon, step and `level_weight` (absent: 0, evenly; `continual.level_scales`)."""
    from firmware.privacy.continual import level_scales

    return level_scales(int(record["sensitivity"]), Fraction(str(record["epsilon"])), DAY_S // int(record["window_s"]),
                        int(record.get("level_weight", 0)))


def minute_scale(record: dict[str, Any]) -> Fraction:
    """The noise scale of a `line_flow` record's values: sensitivity / epsilon."""
    return Fraction(int(record["sensitivity"])) / Fraction(str(record["epsilon"]))


def combine_records(records: Iterable[dict[str, Any]]) -> dict[tuple[int, str, str], list[Estimate | None]]:
    """Per (day start, line, direction): the combined running total at each step of the day from released
    `flow_total` and `line_flow` records (per-minute releases of the tree's step length; others are ignored).
    Index i is step i + 1 of the day; None where nothing released gives an estimate (`Combiner.at`)."""
    totals: dict[tuple[int, str, str], dict[int, int | None]] = defaultdict(dict)
    minutes: dict[tuple[int, str, str], dict[int, int | None]] = defaultdict(dict)
    tvar: dict[tuple[int, str, str], list[float]] = {}
    mvar: dict[tuple[int, str, str], float] = {}
    step: dict[tuple[int, str, str], int] = {}
    flows = []
    for r in records:
        if r.get("metric") == "flow_total":
            day = int(r["since"])
            for d, v in zip("+-", r["values"], strict=True):
                key = (day, r["zone"], d)
                step[key] = int(r["window_s"])
                totals[key][(int(r["window_start"]) - day) // step[key] + 1] = v
                tvar[key] = [laplace_var(b) for b in tree_scales(r)]
        elif r.get("metric") == "line_flow" and r.get("mechanism") == "discrete_laplace":
            flows.append(r)
    for r in flows:
        day = int(r["window_start"]) // DAY_S * DAY_S
        for d, v in zip("+-", r["values"], strict=True):
            key = (day, r["zone"], d)
            if key not in step or int(r["window_s"]) != step[key]:
                continue
            minutes[key][(int(r["window_start"]) - day) // step[key] + 1] = v
            mvar[key] = laplace_var(minute_scale(r))
    out = {}
    for key, by_step in totals.items():
        n = max(by_step)
        comb = Combiner([by_step.get(u) for u in range(1, n + 1)], tvar[key],
                        [minutes[key].get(u) for u in range(1, n + 1)], mvar.get(key, math.inf))
        out[key] = comb.series()
    return out


def monotone(series: Sequence[Estimate | None], causal: bool = True) -> list[Estimate | None]:
    """Consistency post-processing of one day's running-total estimates: the true running totals never fall
    and are never negative, so the estimates are replaced by their weighted isotonic regression (weights
    1 / variance; `scipy.optimize.isotonic_regression`), clipped at 0, over the steps that have an estimate
    (a step without one stays without: no value is assumed). Causal (what a live chart can show at step t):
    the fit of the estimates up to t, read at t, so nothing released later is used; else the fit of the whole
    day (a chart read after the day). Post-processing of released values: no epsilon, the guarantee unchanged.
    The variances returned are the inputs' (the fit's own error has no closed form)."""
    from scipy.optimize import isotonic_regression

    idx = [i for i, e in enumerate(series) if e is not None]
    out: list[Estimate | None] = [None] * len(series)
    if not idx:
        return out
    y = [series[i][0] for i in idx]  # type: ignore[index]
    w = [1.0 / max(series[i][1], 1e-12) for i in idx]  # type: ignore[index]
    if causal:
        fit = [float(isotonic_regression(y[:n + 1], weights=w[:n + 1]).x[-1]) for n in range(len(idx))]
    else:
        fit = [float(v) for v in isotonic_regression(y, weights=w).x]
    for i, v in zip(idx, fit, strict=True):
        out[i] = (max(v, 0.0), series[i][1])  # type: ignore[index]
    return out

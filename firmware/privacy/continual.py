"""Running totals of the day under continual observation: the binary-tree ("binary") mechanism of Dwork, Naor,
Pitassi and Rothblum (2010) and Chan, Shi and Song (2011, Algorithm 2), with exact discrete Laplace noise.

Every `tree_step_s` (a minute by default) the device releases the day's running total of line crossings per
line and direction (`flow_total`) and of visitors per zone (`visitors_total`). Released one step at a time
with fresh noise, a running total would carry the noise of every step before it (error growing with the
square root of the steps, and every step below k suppressed, so a day's chart loses most of its flow).
The tree instead noises each dyadic block of steps once, as it closes: a step's data is in at most
L = (steps in a day).bit_length() blocks (11 for 1440 minutes), and the running total after t steps is the sum
of popcount(t) <= L noised blocks. With noise of scale sensitivity x L / epsilon per block, the error of
every running total is a sum of at most L discrete Laplace draws: O(L^1.5) standard deviations of one step's
release, growing with log T, not with T (`error_bound` states it exactly).
The epsilon may instead be split unevenly over the levels (`tree_level_weight`, `level_scales`): any scales
with sum_j sensitivity / scale_j <= epsilon give the same guarantee, since a step is in one block per level;
weight 2 gives the small blocks of a day's first minutes less noise and the large ones more.

Privacy, and how it composes with the daily budget: one step of data (what one person adds in one step, at
most `tree_crossing_cap` crossings; a person counts as a visitor in at most `max_zones` zones a day) moves at
most L blocks by the sensitivity each, so the blocks holding it are together `tree_epsilon`-DP for it: the
same as one window's release, and charged the same way, `tree_epsilon` per step and stream to the accountant
(streams `flow_total` and `visitors_total`, budget `tree_epsilon` x the steps of a day), through the signed
audit log when there is one, before any noise is drawn. A step whose charge is refused adds nothing to the
tree (its data is dropped), so no block ever holds uncharged data. The gate (`tree_gate`: a value below the private k
threshold of its step is not shown) and the clipping at 0 are post-processing of the noised blocks: free.

Nothing is noised twice: the noised blocks and the exact partial sums of the open ones are written
durably (`tree_state_file`) after the charge and before the release, so a restart resumes the same tree and
a step already released is not released again. A state that cannot vouch for today's releases cannot be
trusted to be the tree whose noise was spent, and its blocks cannot be rebuilt from what was released
(gated, clipped): the running totals are then SUSPENDED for the rest of that day, never restarted with
fresh noise. That is the case when the state file is unreadable, missing or rolled back and either the
audit log records running totals released today (`records_released`, kind `running_total`: read at start,
`history=`; reason `state behind audit log`) or the budget shows today's spend (the accountant has spent
more today than the state knows of, e.g. a crash between the charge and the write; reason `state behind
budget`). A suspended day draws no noise, charges nothing and releases nothing; it is audited
(`continual_state_unusable` for a file that could not be read, `continual_withheld` per stream with the
reason) and written in the state (`suspended`), so a restart keeps it; the next day starts a fresh tree.
No step whose window the audit log records as released today is released again, whatever the state says,
and a day earlier than the state's (the clock went back) releases nothing either. Without an audit log
only the budget store vouches (a store and state deleted together cannot then be told from a new device).
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import fftconvolve

from firmware.config.privacy import TREE_STREAMS, PrivacyConfig
from firmware.privacy.accountant import DAY_S, Accountant
from firmware.privacy.analytics import sum_tail, threshold
from firmware.privacy.dp import SYSTEM, RandomSource, discrete_laplace, exact, laplace_pmf
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import TickResult
from trust.files import check_regular, write_atomic

log = logging.getLogger(__name__)

SCHEMA = "umbra.aggregate/1"
MECHANISM = "binary_tree"
STATE_VERSION = 1


def levels(steps: int) -> int:
    """How many levels of blocks close within `steps` steps: each step is in at most this many noised blocks."""
    return max(1, steps.bit_length())


def block_count(t: int) -> int:
    """How many noised blocks the running total after t steps sums: the 1 bits of t."""
    return t.bit_count()


@functools.lru_cache(maxsize=256)
def error_bound(parts: int, scale: float, delta: float) -> int:
    """The least a such that P[|N_1 + ... + N_parts| > a] <= delta, the N_i independent discrete Laplace of this
    scale: exactly, from the distribution (mass beyond 60 scales per part, below 1e-26, ignored). With parts
    = block_count(t) this bounds the error of the running total after t steps, for each released value."""
    if parts == 0:
        return 0
    return _bound(2 * sum_tail(float(scale), parts)[1:], delta)


def error_bound_of(scales: Sequence[Fraction], t: int, delta: float) -> int:
    """`error_bound` for the running total after step t of a tree with these level scales (`level_scales`):
    the least a such that P[|noise| > a] <= delta, from the distribution (`_bits_pmf`)."""
    if len(set(scales)) == 1:
        return error_bound(t.bit_count(), float(scales[0]), delta)
    pmf = _bits_pmf(tuple(float(b) for b in scales), t)
    mid = (len(pmf) - 1) // 2
    return _bound(2 * np.cumsum(pmf[::-1])[::-1][mid + 1:], delta)


def _bound(outside: np.ndarray, delta: float) -> int:
    """outside[a] = P[|S| > a] = 2 P[S >= a + 1] (S symmetric): the least a with outside[a] <= delta."""
    below = np.nonzero(outside <= delta)[0]
    return int(below[0]) if len(below) else len(outside)


SCALE_GRAIN = 64  # level scales are multiples of 1/64: exact fractions for the sampler


@functools.lru_cache(maxsize=64)
def level_scales(sensitivity: int, epsilon: Fraction, steps: int, weight: int = 0) -> tuple[Fraction, ...]:
    """The discrete Laplace scale of the blocks of each level (index j: blocks of 2^j steps) of a day's tree.

    Privacy: one step's data is in at most one noised block per level (blocks of a level are disjoint) and
    moves it by at most `sensitivity` (L1), so the blocks together are epsilon-DP for one step whenever
    sum_j sensitivity / scale_j <= epsilon (the basic composition of one Laplace release per level); that
    sum is checked here exactly, in fractions, for every split.

    weight 0: every level sensitivity x L / epsilon (Chan, Shi and Song; L = levels(steps)). weight p = 1 or 2:
    the scales that minimize sum over the day's steps t of t^-p Var(total(t)) under that constraint; the
    running total after t sums the blocks of the levels of t's 1 bits, so with W_j = sum of t^-p over the t
    whose bit j is set, Lagrange gives scale_j proportional to W_j^(-1/3). With p = 2 that is the mean squared
    relative error of the day's running totals at a steady rate (smaller blocks, the first minutes of a day,
    get less noise; the largest more); p = 1 lies between. Each scale is rounded up to a multiple of 1/64,
    which only lowers the privacy loss. Nothing here depends on data."""
    L = levels(steps)
    eps = exact(epsilon)
    if weight == 0:
        return (Fraction(sensitivity * L) / eps,) * L
    t = np.arange(1, steps + 1, dtype=np.float64)
    w = [float(np.sum(((np.arange(1, steps + 1) >> j) & 1) * t ** -weight)) for j in range(L)]
    a = sensitivity * sum(x ** (1 / 3) for x in w) / float(eps)
    out = tuple(Fraction(math.ceil(a * x ** (-1 / 3) * SCALE_GRAIN), SCALE_GRAIN) for x in w)
    while sum(Fraction(sensitivity) / b for b in out) > eps:  # float rounding: widen until exact
        out = tuple(b + Fraction(1, SCALE_GRAIN) for b in out)
    return out


def gate_bar(k: int, scales: Sequence[Fraction], beta: float, t: int) -> int:
    """The k gate of the running total after step t of a tree with these level scales: the least T such that
    a true total of k - 1 passes `noised >= T` with probability at most beta. One scale: exactly
    (`analytics.threshold`, as before). Levels of different scales: from the distribution of the sum of the
    blocks of t's 1 bits, by FFT convolution (`_bits_pmf`), its float error (below 1e-12) covered by a margin
    of 1e-10 under beta (beta >= 1e-9), so the bar is never below the exact one (tested against it)."""
    if len(set(scales)) == 1:
        return threshold(k, scales[0], beta, max(1, t.bit_count()))
    pmf = _bits_pmf(tuple(float(b) for b in scales), t)
    mid = (len(pmf) - 1) // 2  # the pmf runs over -mid..mid
    right = np.cumsum(pmf[::-1])[::-1][mid:]  # right[a] = P[S >= a]
    ok = np.nonzero(right[1:] + 1e-10 <= beta)[0]
    return k - 1 + (int(ok[0]) + 1 if len(ok) else len(right))


@functools.lru_cache(maxsize=16)
def _bits_pmf(scales: tuple[float, ...], t: int) -> np.ndarray:
    """The pmf (over -m..m) of the sum of one discrete Laplace per 1 bit j of t, of scale scales[j] (mass
    beyond 60 scales each ignored): that of t without its lowest bit, convolved with the lowest bit's. The
    cache keeps the recent ones, so a step costs one convolution."""
    if t == 0:
        return np.ones(1)
    j = (t & -t).bit_length() - 1
    m = int(60 * scales[j]) + 1
    out = fftconvolve(_bits_pmf(scales, t & (t - 1)), laplace_pmf(np.arange(-m, m + 1), scales[j]))
    return np.maximum(out, 0.0)


class Tree:
    """One vector of counts' binary tree over one day (Chan, Shi and Song's binary mechanism): `alpha[j]` is
    the exact partial sum of the open block at level j, `noisy[j]` the noised sum of the last closed one."""

    def __init__(self, dims: int, scale: Fraction | Sequence[Fraction], steps: int) -> None:
        self.dims, self.steps = dims, steps
        L = levels(steps)
        self.scales = tuple(scale) if isinstance(scale, Sequence) else (scale,) * L  # per level
        if len(self.scales) != L:
            raise ValueError(f"{len(self.scales)} level scales for a tree of {L} levels")
        self.t = 0  # steps added so far today
        self.alpha = [[0] * dims for _ in range(levels(steps))]
        self.noisy = [[0] * dims for _ in range(levels(steps))]
        self.drawn: list[tuple[int, int]] = []  # (level, index) of each block noised by this object

    def add(self, x: Sequence[int], rng: RandomSource) -> list[int]:
        """Adds one step's counts; closes (and noises, once) the block that ends here; the new running total."""
        if len(x) != self.dims:
            raise ValueError(f"a step of {len(x)} counts for a tree of {self.dims}")
        if self.t >= self.steps:
            raise ValueError(f"the day has only {self.steps} steps")
        self.t += 1
        i = (self.t & -self.t).bit_length() - 1  # the level of the block closing at step t
        block = [int(v) + sum(self.alpha[j][d] for j in range(i)) for d, v in enumerate(x)]
        for j in range(i):
            self.alpha[j] = [0] * self.dims
            self.noisy[j] = [0] * self.dims
        self.alpha[i] = block
        self.noisy[i] = [v + discrete_laplace(self.scales[i], rng) for v in block]
        self.drawn.append((i, self.t >> i))
        return self.total()

    def total(self) -> list[int]:
        """The noised running total: the sum of the closed blocks that tile steps 1..t."""
        out = [0] * self.dims
        for j in range(len(self.noisy)):
            if self.t >> j & 1:
                out = [a + b for a, b in zip(out, self.noisy[j], strict=True)]
        return out

    def exact_total(self) -> list[int]:
        """The same sum without noise (tests, and the bench's truth): the alphas of the closed blocks."""
        out = [0] * self.dims
        for j in range(len(self.alpha)):
            if self.t >> j & 1:
                out = [a + b for a, b in zip(out, self.alpha[j], strict=True)]
        return out

    def to_json(self) -> dict[str, Any]:
        return {"t": self.t, "alpha": self.alpha, "noisy": self.noisy}

    @classmethod
    def from_json(cls, data: Any, dims: int, scale: Fraction | Sequence[Fraction], steps: int) -> Tree:
        tree = cls(dims, scale, steps)
        t, alpha, noisy = int(data["t"]), data["alpha"], data["noisy"]
        shape = [len(tree.alpha), dims]
        for rows in (alpha, noisy):
            if [len(rows), *{len(r) for r in rows}] != shape or not all(isinstance(v, int) for r in rows for v in r):
                raise ValueError("tree of another shape")
        if not 0 <= t <= steps:
            raise ValueError(f"step {t} outside the day")
        tree.t, tree.alpha, tree.noisy = t, [list(r) for r in alpha], [list(r) for r in noisy]
        return tree


@dataclass
class _Step:
    index: int  # steps since the epoch
    crossings: dict[int, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    visitors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    untrusted: bool = False
    last_wall: float = 0.0


@dataclass
class _State:
    day: int = -1
    last_step: int = -1  # the last step (since the epoch) released or passed over
    spent: dict[str, str] = field(default_factory=dict)  # per stream: epsilon charged today, as the state knows
    trees: dict[str, Tree] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)
    suspended: str = ""  # why this day's running totals are suspended ("": they are not); no trees then


_RELEASED_MARKER = b'"kind":"running_total"'


def released_in_log(path: str | Path | None) -> dict[int, int]:
    """Per day (since the epoch): the latest window_start of running totals the audit log records as released.
    Entries are found by their marker, as the budget's spends are (`accountant.spends_in_log`)."""
    if path is None:
        return {}
    try:
        check_regular(path)
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        log.error("cannot read the audit log %s for released running totals: %s", path, e.strerror)
        return {}
    out: dict[int, int] = {}
    pos = data.find(_RELEASED_MARKER)
    while pos >= 0:
        start = data.rfind(b"\n", 0, pos) + 1
        stop = data.find(b"\n", pos)
        try:
            entry = json.loads(data[start:stop if stop >= 0 else len(data)])
            start_s = entry["fields"]["window_start"]
            if entry["event"] == "records_released" and isinstance(start_s, int):
                day = start_s // DAY_S
                out[day] = max(out.get(day, start_s), start_s)
        except (ValueError, KeyError, TypeError):
            pass  # a damaged line is the audit log's verify() to report
        pos = data.find(_RELEASED_MARKER, pos + 1)
    return out


class ContinualRelease:
    """A loop sink: `sink(tick)`. Each step's running totals go to `emit(records)` as the next step begins."""

    def __init__(self, config: PrivacyConfig, geometry: Geometry, accountant: Accountant,
                 emit: Callable[[list[dict[str, Any]]], None], state_path: str | Path, *,
                 rng: RandomSource = SYSTEM, audit: Callable[..., Any] | None = None,
                 trusted: Callable[[], bool] | None = None, history: str | Path | None = None) -> None:
        config.validate()
        self.config, self.geometry, self.accountant, self.emit = config, geometry, accountant, emit
        self.rng, self.audit, self.path = rng, audit, Path(state_path)
        self._trusted = trusted or (lambda: True)
        self.lines = [ln.name for ln in geometry.config.lines]
        self.zones = [z.name for z in geometry.config.zones]
        self.steps = DAY_S // config.tree_step_s
        self.levels = levels(self.steps)
        self.eps = exact(config.tree_epsilon)
        self.sensitivity = {"flow_total": config.tree_crossing_cap,
                            "visitors_total": min(config.max_zones, max(1, len(self.zones)))}
        self.dims = {"flow_total": 2 * len(self.lines), "visitors_total": len(self.zones)}
        self.streams = [s for s in TREE_STREAMS if self.dims[s]]
        self._cur: _Step | None = None
        self._seen: dict[int, set[str]] = defaultdict(set)  # today's visitors: track -> zones counted in
        self._seen_day = -1
        self._withheld: set[tuple[str, int, str]] = set()  # (stream, day, reason) already audited
        self._released = released_in_log(history)  # day -> latest window_start released, as the log says
        self._unusable = ""  # why the state file could not be used (audited with the first step)
        self.state = self._load()

    def scales(self, stream: str) -> tuple[Fraction, ...]:
        """The stream's block scale at each level (`level_scales`)."""
        return level_scales(self.sensitivity[stream], self.eps, self.steps, self.config.tree_level_weight)

    def scale(self, stream: str) -> Fraction:
        """The one block scale of an evenly split tree (tree_level_weight 0)."""
        scales = set(self.scales(stream))
        if len(scales) != 1:
            raise ValueError("the tree's levels have different scales: use scales()")
        return scales.pop()

    # -- accumulation ------------------------------------------------------------------------------------

    def __call__(self, tick: TickResult) -> None:
        index = int(tick.wall // self.config.tree_step_s)
        if self._cur is not None and index != self._cur.index:
            self.close_step()
        if self._cur is None:
            self._cur = _Step(index)
        cur = self._cur
        cur.last_wall = tick.wall
        if not cur.untrusted and not self._trusted():
            cur.untrusted = True
        day = int(tick.wall // DAY_S)
        if day != self._seen_day:
            self._seen, self._seen_day = defaultdict(set), day
        for c in tick.crossings:
            cur.crossings[int(c.track_id)].append((c.line, c.direction))
        g = tick.ground
        if not len(g.track_ids) or not self.zones:
            return
        for tid, zone in zip((int(i) for i in g.track_ids), self.geometry.zone_of(g.xy), strict=True):
            seen = self._seen[tid]
            if zone is not None and zone not in seen and len(seen) < self.sensitivity["visitors_total"]:
                seen.add(zone)
                cur.visitors[zone] += 1

    def _counts(self, cur: _Step) -> dict[str, list[int]]:
        flow: dict[tuple[str, str], int] = defaultdict(int)
        for crossings in cur.crossings.values():
            for line, direction in crossings[: self.config.tree_crossing_cap]:
                flow[(line, direction)] += 1
        return {"flow_total": [flow[(ln, d)] for ln in self.lines for d in "+-"],
                "visitors_total": [cur.visitors[z] for z in self.zones]}

    # -- release -----------------------------------------------------------------------------------------

    def close_step(self) -> None:
        cur, self._cur = self._cur, None
        if cur is None or not self.streams:
            return
        day, i = divmod(cur.index, self.steps)
        if self._unusable and self.audit is not None:
            self.audit("continual_state_unusable", cur.last_wall, file=str(self.path), why=self._unusable)
        self._unusable = ""
        window_start = cur.index * self.config.tree_step_s
        passed = self._passed(cur.index, day, window_start)
        if not passed:
            if day > self.state.day:
                self.state = self._new_day(day)
            if self._suspend(cur, day):
                passed = self.state.suspended
                self.state.last_step = cur.index
                self._save()  # the suspension outlives a restart; no tree, no noise drawn this day
        if passed:
            for s in self.streams:
                self._withhold(s, day, passed, cur.last_wall)
            return
        self._release(cur, day, i, window_start)

    def _release(self, cur: _Step, day: int, i: int, window_start: int) -> None:
        """Charges the step, adds it to the trees (written durably), then releases the running totals."""
        st = self.state
        for tree in st.trees.values():  # steps the sensor did not see add nothing: noised as they close
            while tree.t < i:
                tree.add([0] * tree.dims, self.rng)
        st.last_step = cur.index
        granted = self._pay(cur, day)
        counts = self._counts(cur)
        for s, tree in st.trees.items():
            tree.add(counts[s] if s in granted else [0] * tree.dims, self.rng)
        self._save()  # before the release: a restart resumes this tree and never noises its blocks again
        records = [r for s in granted for r in self._records(s, cur)]
        if records:
            self.emit(records)
            self._released[day] = window_start
            if self.audit is not None:
                self.audit("records_released", cur.last_wall, kind="running_total", count=len(records),
                           window_start=window_start)

    def _passed(self, index: int, day: int, window_start: int) -> str:
        """Why a step may not be released at all ("": it may): a day before the state's, or a step the state or
        the audit log says was released (or passed over) already."""
        if day < self.state.day:
            return "clock back"
        if index <= self.state.last_step or window_start <= self._released.get(day, -1):
            return "step already released"
        return ""

    def _suspend(self, cur: _Step, day: int) -> bool:
        """Whether the day's running totals are (now) suspended: the state cannot vouch for what the audit log
        or the budget says was released today. Decided before any noise of the step is drawn."""
        st = self.state
        if st.suspended:
            return True
        logged = self._released.get(day)
        known = st.last_step * self.config.tree_step_s if st.last_step >= 0 else -1
        if logged is not None and logged > known:
            st.suspended = "state behind audit log"
        for s in self.streams if not st.suspended else ():
            spent = self.accountant.spent(s, cur.last_wall)
            if spent != Fraction(st.spent.get(s, "0")):
                st.suspended = "state behind budget"
                log.error("continual-release state knows %s of %s spent today, the budget %s", st.spent.get(s, "0"),
                          s, spent)
        if st.suspended:
            st.trees = {}
        return bool(st.suspended)

    def _pay(self, cur: _Step, day: int) -> list[str]:
        """The streams whose step is charged (before any of its noise is drawn); the others add nothing."""
        live = [s for s in self.streams if self._in_step(s, day, cur)]
        if not live:
            return []
        charges = self.accountant.charge_many({s: self.eps for s in live}, cur.last_wall)
        granted = []
        for s in live:
            if charges[s].granted:
                granted.append(s)
                self.state.spent[s] = str(Fraction(self.state.spent.get(s, "0")) + self.eps)
            else:
                self._withhold(s, day, f"budget ({charges[s].reason})", cur.last_wall)
        return granted

    def _in_step(self, stream: str, day: int, cur: _Step) -> bool:
        """Whether the stream can release this step: trusted time (the state agrees with the budget: `_suspend`)."""
        if cur.untrusted:
            self._withhold(stream, day, "wall time not trusted", cur.last_wall)
            return False
        return True

    def _withhold(self, stream: str, day: int, reason: str, t: float, **fields: Any) -> None:
        key = (stream, day, reason)
        if key in self._withheld:
            return
        self._withheld.add(key)
        log.warning("running totals of %s on day %d withheld: %s", stream, day, reason)
        if self.audit is not None:
            self.audit("continual_withheld", t, stream=stream, day=day, reason=reason, **fields)

    def _records(self, stream: str, cur: _Step) -> list[dict[str, Any]]:
        st, cfg = self.state, self.config
        tree = st.trees[stream]
        total = tree.total()
        shown: list[int | None] = [max(v, 0) for v in total]
        if cfg.tree_gate:  # each value on its own, each step: below k it passes with probability <= beta
            bar = gate_bar(cfg.k, tree.scales, cfg.beta, tree.t)
            shown = [v if t >= bar else None for v, t in zip(shown, total, strict=True)]
        names, width = (self.lines, 2) if stream == "flow_total" else (self.zones, 1)
        weight = {"level_weight": cfg.tree_level_weight} if cfg.tree_level_weight else {}
        return [{"schema": SCHEMA, "window_start": cur.index * cfg.tree_step_s, "window_s": cfg.tree_step_s,
                 "since": st.day * DAY_S, "metric": stream, "zone": name, "values": shown[j * width:(j + 1) * width],
                 "k": cfg.k, "epsilon": float(self.eps), "sensitivity": self.sensitivity[stream],
                 "mechanism": MECHANISM, **weight} for j, name in enumerate(names)]

    # -- the durable state -------------------------------------------------------------------------------

    def _new_day(self, day: int) -> _State:
        return _State(day, -1, {}, {s: Tree(self.dims[s], self.scales(s), self.steps) for s in self.streams},
                      dict(self.dims))

    def _save(self) -> None:
        st = self.state
        doc = {"version": STATE_VERSION, "day": st.day, "last_step": st.last_step, "spent": st.spent,
               "dims": st.dims, "trees": {s: t.to_json() for s, t in st.trees.items()}, "suspended": st.suspended}
        write_atomic(self.path, json.dumps(doc, separators=(",", ":")).encode(), private=True)

    def _load(self) -> _State:
        """The persisted state; a missing, damaged or differently shaped one starts empty (and if the audit log
        or the budget shows releases today, `_suspend` suspends the day: it is never re-noised)."""
        try:
            check_regular(self.path)
            doc = json.loads(self.path.read_bytes())
            if doc.get("version") != STATE_VERSION or doc["dims"] != self.dims:
                raise ValueError("another version or other lines and zones")
            suspended = doc.get("suspended", "")
            if not isinstance(suspended, str):
                raise ValueError("suspended is not a reason")
            trees = {} if suspended else {s: Tree.from_json(doc["trees"][s], self.dims[s], self.scales(s),
                                                             self.steps) for s in self.streams}
            spent = {str(k): str(Fraction(v)) for k, v in doc["spent"].items()}
            return _State(int(doc["day"]), int(doc["last_step"]), spent, trees, dict(self.dims), suspended)
        except FileNotFoundError:
            return _State()
        except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as e:
            log.error("continual-release state %s unusable (%s): starting empty; today's running totals are "
                      "suspended if any were released", self.path, e)
            self._unusable = f"unusable: {e}"[:200]
            return _State()

    def close(self) -> None:
        """At shutdown: the step under way is released (it is complete as far as this run goes)."""
        self.close_step()


def naive_sum_std(steps: int, scale: float) -> float:
    """For comparison: the standard deviation of a running total summed from per-step releases of this scale
    (noise of every step adds up: sqrt(steps) x one step's deviation)."""
    q = math.exp(-1 / scale)
    return math.sqrt(steps * 2 * q / (1 - q) ** 2)

"""Aggregates that leave the device in the `aggregates` privacy profile (and beside tracks in `tracks`): per
zone and window, occupancy (visitors, mean and peak present), line flow per direction, a dwell-time histogram,
and an activity heatmap; each bounded per person, noised with exact discrete Laplace noise, suppressed below
k on the noised count, and paid for from a daily budget that survives restarts.

Guarantees, per window and stream (the `sensitivity` and `epsilon` travel with every record):
- Contribution bounding: a person counts in at most `max_zones` zones (those where they spent most time),
  adds at most a cap of seconds to the mean occupancy, makes at most `crossing_cap` crossings, and adds at
  most `heat_cap_s` people-seconds to the heatmap (so one person moves a window's mean occupancy by at most
  cap / window, not by a whole person). The presence cap is chosen per window from the noised dwell
  histogram (`presence_cap`), up to `presence_cap_s`: a window of short visits gets a small cap and little
  noise, one where people linger a larger cap and less truncation.
- Each stream's release is one epsilon-DP vector mechanism (discrete Laplace with scale = L1 sensitivity /
  epsilon per part); epsilon composes sequentially over the day in the accountant.
- The dwell histogram (its own stream) also says how many people visited a zone: the sum of its noised
  buckets. That sum gates the zone and is the released visitor count, as post-processing, so the occupancy
  stream's whole epsilon goes to the mean and the peak (`occupancy_split`). Buckets that start beyond the
  window's samples (a dwell is clamped to them) are exact zeros, not noised (`live_buckets`). The people-seconds
  the presence cap cut are estimated from the same histogram and added back to the mean (post-processing,
  `truncation_estimate`): a cap can stay short, and its noise small, without losing the few who linger.
- k-anonymity without leaks: a zone (or line direction, heatmap cell) is released only when its noised count
  is at least the threshold `k - 1 + t`, where t is the smallest integer with P[noise >= t] <= beta (the
  noise of a zone's count being the sum of its histogram buckets' noise), so a group of fewer than k people
  is released with probability at most beta and the decision is itself DP.
- Complements: a site total is released only when every zone is, and then as the sum of the released zone
  values (post-processing), so it can never reveal a suppressed zone; a dwell histogram is all or nothing.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from firmware.config.privacy import STREAMS, PrivacyConfig
from firmware.errors import AuditError
from firmware.privacy.accountant import Accountant
from firmware.privacy.audit import audited
from firmware.privacy.dp import SYSTEM, RandomSource, discrete_laplace, exact, laplace_pmf, laplace_var
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import TickResult

log = logging.getLogger(__name__)

CAP_TAIL = 3.5  # people beyond the presence cap, times the mean's epsilon (see presence_cap)
SCHEMA = "umbra.aggregate/1"


def threshold(k: int, scale: Fraction, beta: float, parts: int = 1) -> int:
    """Least T such that a true count of k - 1 passes `noised >= T` with probability at most beta, the noise
    being the sum of `parts` independent discrete Laplace draws of this scale."""
    if parts == 1:
        q = math.exp(-1 / float(scale))
        t = max(0, math.ceil(math.log(beta * (1 + q)) / math.log(q))) if q > 0 else 0
        return k - 1 + max(t, 1)
    tail = sum_tail(float(scale), parts)
    t = next(i for i in range(1, len(tail)) if tail[i] <= beta)
    return k - 1 + t


DIRECT_MAX = 6000  # sum_tail: points a part times parts up to which the parts are convolved directly


@functools.lru_cache(maxsize=64)
def sum_tail(scale: float, parts: int) -> np.ndarray:
    """P[N_1 + ... + N_parts >= t] for t = 0, 1, ..., the N_i discrete Laplace of one scale (exact up to the
    mass cut beyond 60 scales per part, below 1e-26). Past DIRECT_MAX points a part the parts' sum is taken
    through one FFT (within about 1e-14 of the direct sum, far below MIN_BETA's 1e-9): direct convolution
    grows with (scale x parts)^2, and at a scale of 100 (epsilon 0.01, or 0.06 with six chains a person) it
    took some 44 s of the loop's CPU at a window's close."""
    m = int(60 * scale) + 1
    pmf = laplace_pmf(np.arange(-m, m + 1), scale)
    if m * parts <= DIRECT_MAX:
        total = pmf
        for _ in range(parts - 1):
            total = np.convolve(total, pmf)
    else:
        n = parts * (len(pmf) - 1) + 1
        size = 1 << (n - 1).bit_length()
        total = np.clip(np.fft.irfft(np.fft.rfft(pmf, size) ** parts, size)[:n], 0.0, None)
    mid = len(total) // 2
    return np.cumsum(total[::-1])[::-1][mid:]


def fine_edges(cfg: PrivacyConfig) -> list[float]:
    """The dwell histogram's internal bucket edges: the configured ones and the presence cap's candidates
    (30 s, or a quarter of a shorter window, doubling up to `presence_cap_s`, short of the window: no one stays
    longer than the window). A 1-minute window gets 15 s and 30 s: walkers pass in 10 to 20 s, and a 15 s cap
    halves the mean's noise."""
    top = min(cfg.presence_cap_s, cfg.window_s)
    grid, c = [], min(30, cfg.window_s // 4)
    while c < top:
        grid.append(float(c))
        c *= 2
    if cfg.presence_cap_s < cfg.window_s:
        grid.append(float(cfg.presence_cap_s))
    return sorted({*map(float, cfg.dwell_edges_s), *grid})


def live_buckets(edges: Sequence[float], samples: int) -> int:
    """How many of the dwell histogram's buckets (the first ones) can hold anyone in a window of `samples`
    seconds: a dwell is clamped to the window's samples, so a bucket whose lower edge is beyond them is empty
    whatever the data. The number of samples is public (the sensor's seconds of operation, not of people),
    so these buckets are released as an exact 0 without noise: fewer noised parts in the visitor count."""
    return 1 + sum(1 for e in edges if e <= samples)


def presence_cap(cfg: PrivacyConfig, edges: Sequence[float], noisy_hist: Sequence[int], e_mean: Fraction,
                 samples: int, bucket_var: float = 0.0) -> int:
    """The window's presence cap, from the noised site-wide dwell histogram (post-processing, no epsilon):
    the least candidate that at most ceil(CAP_TAIL / e_mean) people stayed beyond, allowing one standard
    deviation of the noise in that count (`bucket_var` is one bucket's noise variance); else
    `presence_cap_s`; never more than the window's samples.

    Why a few people beyond the cap and not none: the truncation loss b adds to the error only as about
    b^2 / 2s while it is small against the noise scale s = cap / e_mean (E|N - b| = b + s e^(-b/s) for Laplace
    noise), so the best cap leaves (1 + x) / (e^x - 1) / e_mean people beyond it, x = b/s: 3.5 / e_mean at
    x = 0.33. Why the allowance: the count beyond a short cap sums the noise of every longer bucket (of every
    zone), which otherwise pushes the choice to long caps and loud noise. How both constants were chosen, and
    what they are worth: docs/TUNING.md."""
    tail = math.ceil(CAP_TAIL / float(e_mean))
    beyond = np.cumsum(np.asarray(noisy_hist[::-1]))[::-1][1:]  # beyond[i]: noised count above edges[i]
    for j, (edge, n) in enumerate(zip(edges, beyond, strict=True)):
        if edge > cfg.presence_cap_s or edge >= samples:
            break
        # the allowance counts every bucket above, the exact zeros past the samples too (live_buckets)
        if n <= tail + math.sqrt(bucket_var * (len(edges) - j)):
            return int(edge)
    return int(min(cfg.presence_cap_s, samples))


def truncation_estimate(edges: Sequence[float], noisy_hist: Sequence[int], cap: int, samples: int,
                        scale: Fraction, beta: float) -> float:
    """The people-seconds the presence cap cut from one zone's mean, estimated from its noised dwell histogram
    (post-processing, no epsilon): each live bucket above the cap holds people who stayed about its middle
    (the top live bucket ends at the window's samples), so each adds (middle - cap) seconds. A bucket counts
    only when its noised count (noise of this `scale`) clears the threshold an empty bucket clears with
    probability at most beta / m, m being the live buckets above the cap: whatever the data, the chance that
    any empty bucket is counted is at most beta. The long buckets are usually empty, and their noise, weighted
    by hundreds of seconds, would otherwise swamp the estimate (soft thresholding at 2 deviations lifted
    crowds_zara02 as much but left one window in twenty 20 points off on the scenes where nobody lingers)."""
    live = live_buckets(edges, samples)
    lows = [0.0, *edges]
    above = [b for b in range(1, live) if lows[b] >= cap]
    if not above:
        return 0.0
    t = threshold(1, scale, beta / len(above))  # an empty bucket reaches t with probability <= beta / m
    total = 0.0
    for b in above:
        hi = min(edges[b] if b < len(edges) else samples, samples)
        if noisy_hist[b] >= t:
            total += noisy_hist[b] * ((lows[b] + hi) / 2 - cap)
    return total


@dataclass
class _Window:
    start: int
    samples: int = 0  # 1 Hz sampling instants seen
    present: dict[int, dict[str, list[int]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    seconds: dict[int, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    crossings: dict[int, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    heat: dict[int, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    untrusted: bool = False  # a tick of it came while wall time was not trusted: its start may be wrong


class Analytics:
    """A loop sink: `analytics(tick)`. Released records go to `emit(records)` at each window's end."""

    def __init__(self, config: PrivacyConfig, geometry: Geometry, accountant: Accountant,
                 emit: Callable[[list[dict[str, Any]]], None], *, rng: RandomSource = SYSTEM,
                 audit: Callable[..., Any] | None = None, noise: bool = True,
                 trusted: Callable[[], bool] | None = None) -> None:
        """`trusted()`: whether wall time can be trusted now (hal.trustedtime); a window any tick of which came
        while it could not is withheld, as is a window not later than the last released (a clock gone back)."""
        config.validate()
        self._trusted = trusted or (lambda: True)
        self._released_start: int | None = None
        self.config, self.geometry, self.accountant, self.emit = config, geometry, accountant, emit
        self.rng, self.audit, self.noise = rng, audit, noise  # noise=False: the bench's 'no privacy' rows only
        self.zones = [z.name for z in geometry.config.zones]
        self.lines = [ln.name for ln in geometry.config.lines]
        self._w: _Window | None = None
        self._last_wall: float | None = None
        self._last_second: int | None = None
        self.refused: dict[str, int] = defaultdict(int)
        self.withheld = 0  # aggregate records never released: their audit entry could not be written
        self.withheld_windows = 0
        self._grants: dict[str, bool] = {}

    # -- accumulation ------------------------------------------------------------------------------------

    def __call__(self, tick: TickResult) -> None:
        start = int(tick.wall // self.config.window_s) * self.config.window_s
        if self._w is not None and start != self._w.start:
            self.close_window()
        if self._w is None:
            self._w = _Window(start)
        self._accumulate(self._w, tick)

    def _accumulate(self, w: _Window, tick: TickResult) -> None:
        if not w.untrusted and not self._trusted():
            w.untrusted = True
        dt = 0.0 if self._last_wall is None else min(max(tick.wall - self._last_wall, 0.0), 5.0)
        self._last_wall = tick.wall
        g = tick.ground
        zones = self.geometry.zone_of(g.xy) if len(g.track_ids) else []
        ids = [int(i) for i in g.track_ids]
        for tid, zone in zip(ids, zones, strict=True):
            if zone is not None:
                w.seconds[tid][zone] += dt
        second = int(tick.wall)
        if second != self._last_second:  # 1 Hz sampling for occupancy and the heatmap
            self._last_second = second
            w.samples += 1
            cells = np.floor(g.xy / self.config.heatmap_cell_m).astype(np.int64) if len(ids) else np.zeros((0, 2), int)
            for j, (tid, zone) in enumerate(zip(ids, zones, strict=True)):
                if zone is not None:
                    w.present[tid][zone].append(w.samples)
                w.heat[tid].append((int(cells[j][0]), int(cells[j][1])))
        for c in tick.crossings:
            w.crossings[int(c.track_id)].append((c.line, c.direction))

    # -- release -----------------------------------------------------------------------------------------

    def close_window(self) -> None:
        w, self._w = self._w, None
        if w is None or w.samples == 0:
            return
        if w.untrusted or (self._released_start is not None and w.start <= self._released_start):
            if self.audit is not None:  # nothing paid, nothing released: its time cannot be vouched for
                audited(self.audit, "window_withheld", float(self._last_wall or 0.0), window_start=w.start,
                        reason="wall time not trusted" if w.untrusted else "window not after the last released")
            return
        self._released_start = w.start
        records: list[dict[str, Any]] = []
        try:
            self._grants = self._pay_all()
        except AuditError as e:  # the spend could not be chained into the log (a full disk): nothing charged
            self.withheld_windows += 1
            log.error("window %s not released: its budget spend could not be written to the audit log: %s",
                      w.start, e)
            return
        allowed = self._bounded_zones(w)
        records += self._occupancy_and_dwell(w, allowed)
        records += self._flow(w)
        records += self._heatmap(w)
        if not self._audit_release(w, records):
            self.withheld_windows += 1
            self.withheld += len(records)
            log.error("window %s: %d aggregate records not released, their audit entries could not be written",
                      w.start, len(records))
            return
        if records:
            self.emit(records)

    def _audit_release(self, w: _Window, records: list[dict[str, Any]]) -> bool:
        """The window's spends and its release into the audit log, before anything leaves; False when the log
        could not take them (then nothing of the window is released)."""
        if self.audit is None:
            return True
        t = float(self._last_wall or 0.0)
        eps = float(self.config.epsilon) if self.noise else 0.0
        for stream, granted in self._grants.items():
            if granted and not audited(self.audit, "budget_spent", t, stream=stream, epsilon=eps,
                                       window_start=w.start):
                return False
        if not records:
            return True
        metrics: dict[str, int] = defaultdict(int)
        for r in records:
            metrics[r["metric"]] += 1
        return audited(self.audit, "records_released", t, kind="aggregate", count=len(records),
                       window_start=w.start, metrics=dict(metrics))

    def _bounded_zones(self, w: _Window) -> dict[int, list[str]]:
        """Each person's zones, longest stay first, cut to max_zones (no cut without noise: no DP to bound)."""
        cap = self.config.max_zones if self.noise else len(self.zones)
        out = {}
        for tid, by_zone in w.present.items():
            ranked = sorted(by_zone, key=lambda z: (-len(by_zone[z]), z))
            out[tid] = ranked[:cap]
        return out

    def _pay_all(self) -> dict[str, bool]:
        """One durable budget transaction per window for every stream that will release."""
        if not self.noise:
            return {s: True for s in STREAMS}
        streams = [s for s in STREAMS if self._has_subject(s)]
        eps = exact(self.config.epsilon)
        charges = self.accountant.charge_many({s: eps for s in streams}, float(self._last_wall or 0.0))
        return {s: self._granted(c) for s, c in charges.items()}

    def _has_subject(self, stream: str) -> bool:
        """A stream with nothing to count (no zones, no lines) is neither paid for nor released."""
        if stream == "flow":
            return bool(self.lines)
        return stream == "heatmap" or bool(self.zones)

    def _pay(self, stream: str, eps: Fraction) -> bool:
        return self._grants.get(stream, False) and self._has_subject(stream)

    def _granted(self, charge) -> bool:
        stream = charge.stream
        if not charge.granted:
            self.refused[stream] += 1
            if self.refused[stream] == 1:
                log.warning("privacy budget of stream %s spent for today (%s of %s): nothing more is released",
                            stream, charge.spent, charge.budget)
                if self.audit is not None:
                    self.audit("budget_exhausted", float(self._last_wall or 0.0), stream=stream,
                               spent=str(charge.spent), budget=str(charge.budget))
        else:
            self.refused.pop(stream, None)
        return charge.granted

    def _noisy(self, value: int, sensitivity: int, eps: Fraction) -> int:
        if not self.noise:
            return int(value)
        return int(value) + discrete_laplace(Fraction(sensitivity) / eps, self.rng)

    def _passes(self, noisy: int, sensitivity: int, eps: Fraction, k: int, parts: int = 1) -> bool:
        if not self.noise:
            return noisy >= k
        return noisy >= threshold(k, Fraction(sensitivity) / eps, self.config.beta, parts)

    def _record(self, w: _Window, metric: str, zone: str, values: list, eps: Fraction,
                sens: int | list[float]) -> dict:
        return {"schema": SCHEMA, "window_start": w.start, "window_s": self.config.window_s, "metric": metric,
                "zone": zone, "values": values, "k": self.config.k,
                "epsilon": float(eps) if self.noise else 0.0, "sensitivity": sens,
                "mechanism": "discrete_laplace" if self.noise else "none"}

    def _true_dwell(self, w: _Window, allowed: dict[int, list[str]], edges: Sequence[float]) -> dict[str, list[int]]:
        """Each zone's exact dwell histogram on the fine edges (before noise)."""
        true = {z: [0] * (len(edges) + 1) for z in self.zones}
        for tid, zones in allowed.items():
            for z in zones:
                true[z][int(np.searchsorted(edges, min(w.seconds[tid][z], w.samples), side="right"))] += 1
        return true

    def _per_sample(self, w: _Window, allowed: dict[int, list[str]], cap: int | None) -> dict[str, np.ndarray]:
        """People present in each zone at each sample (before noise); a person adds at most `cap` samples in
        all zones together."""
        per_sample: dict[str, np.ndarray] = {z: np.zeros(w.samples + 1, np.int64) for z in self.zones}
        for tid, zones in allowed.items():
            budget = cap
            for z in zones:
                seen = w.present[tid][z][:budget]
                per_sample[z][seen] += 1
                if budget is not None:
                    budget -= len(seen)
        return per_sample

    def _occupancy_and_dwell(self, w: _Window, allowed: dict[int, list[str]]) -> list[dict]:
        cfg = self.config
        eps = exact(cfg.epsilon)
        if not (self._pay("occupancy", eps) and self._pay("dwell", eps)):
            return []
        e_mean, e_peak = (eps * exact(s) for s in cfg.occupancy_split)
        mz = min(cfg.max_zones, len(self.zones))  # a person counts in at most this many zones
        # The dwell stream: one histogram per zone on a fine grid (the configured edges and the cap grid); a
        # person adds 1 to one bucket in each of at most mz zones, so the L1 sensitivity is mz.
        edges = fine_edges(cfg)
        true = self._true_dwell(w, allowed, edges)
        live = live_buckets(edges, w.samples) if self.noise else len(edges) + 1
        noisy = {z: [self._noisy(c, mz, eps) for c in true[z][:live]] + true[z][live:] for z in self.zones}
        # From here on, the dwell histograms are only post-processed: the presence cap, the visitor counts
        # and the configured buckets all come from them at no further cost in privacy.
        cap = presence_cap(cfg, edges, [sum(col) for col in zip(*noisy.values(), strict=True)], e_mean,
                           w.samples, len(self.zones) * laplace_var(Fraction(mz) / eps)) if self.noise else None
        per_sample = self._per_sample(w, allowed, cap)
        sens_mean = cap or w.samples  # people-seconds one person adds to the zones' sums (L1)
        groups = np.searchsorted(cfg.dwell_edges_s, edges, side="right")  # fine bucket i+1 -> configured bucket
        out, released = [], {}
        for z in self.zones:
            n = sum(noisy[z])  # the visitors
            if not self._passes(n, mz, eps, cfg.k, parts=live):
                continue
            configured = [0] * (len(cfg.dwell_edges_s) + 1)
            for i, c in enumerate(noisy[z]):
                configured[int(groups[i - 1]) if i else 0] += c
            mean_sum: float = self._noisy(int(per_sample[z].sum()), sens_mean, e_mean)
            if cap is not None:  # add back what the cap cut, as the released dwell histogram tells it
                # beta shared by the zones: at most beta that any empty bucket of the window is counted
                mean_sum += truncation_estimate(edges, noisy[z], cap, w.samples, Fraction(mz) / eps,
                                                cfg.beta / len(self.zones))
            peak = self._noisy(int(per_sample[z].max()), mz, e_peak)
            released[z] = (max(n, 0), max(mean_sum, 0) / w.samples, max(peak, 0))
            out.append(self._record(w, "occupancy", z, [released[z][0], round(released[z][1], 3), released[z][2]],
                                    eps, [mz, round(sens_mean / w.samples, 6), mz]))
            out.append(self._record(w, "dwell_histogram", z, [max(c, 0) for c in configured], eps, mz))
        if released and len(released) == len(self.zones):  # the site total only when no zone was held back
            tot = [sum(v[i] for v in released.values()) for i in range(3)]
            out.append(self._record(w, "occupancy", "*", [tot[0], round(tot[1], 3), tot[2]], eps,
                                    [mz, round(sens_mean / w.samples, 6), mz]))
        return out

    def _flow(self, w: _Window) -> list[dict]:
        cfg = self.config
        eps = exact(cfg.epsilon)
        if not self.lines or not self._pay("flow", eps):
            return []
        counts: dict[tuple[str, str], int] = defaultdict(int)
        cap = cfg.crossing_cap if self.noise else None
        for crossings in w.crossings.values():
            for line, direction in crossings[:cap]:
                counts[(line, direction)] += 1
        out = []
        for line in self.lines:
            values: list[int | None] = []
            for d in ("+", "-"):
                n = self._noisy(counts[(line, d)], cfg.crossing_cap, eps)
                values.append(max(n, 0) if self._passes(n, cfg.crossing_cap, eps, cfg.k) else None)
            out.append(self._record(w, "line_flow", line, values, eps, cfg.crossing_cap))
        return out

    def _heatmap(self, w: _Window) -> list[dict]:
        cfg = self.config
        eps = exact(cfg.epsilon)
        if not self._pay("heatmap", eps):
            return []
        cells: dict[tuple[int, int], int] = defaultdict(int)
        for visits in w.heat.values():
            for cell in visits[: cfg.heat_cap_s]:
                cells[cell] += 1
        out = []
        for (cx, cy), secs in sorted(cells.items()):
            n = self._noisy(secs, cfg.heat_cap_s, eps)
            if self._passes(n, cfg.heat_cap_s, eps, cfg.k * cfg.heat_min_s):
                out.append(self._record(w, "heatmap", f"{cx},{cy}", [n, cfg.heatmap_cell_m], eps, cfg.heat_cap_s))
        return out


def release_counts(records: Sequence[dict]) -> dict[str, int]:
    """How many released records of each metric (for summaries)."""
    out: dict[str, int] = defaultdict(int)
    for r in records:
        out[r["metric"]] += 1
    return dict(out)

"""Ground-plane geometry: image pixels to metres through a homography, zones as polygons, count lines and
the counter that counts their crossings (LineCounter). Pure: no clock, no I/O (times come with the calls)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from firmware.config.sensing import GeometryConfig, LineConfig

FORGET_S = 600.0  # a track unseen this long has ended (the longest [tracker] max_lost_s allowed): its sides go
WALK_MPS = 2.0  # a walker's top speed: how far a lost walker can have gone by the time a new track is born
_FEW_POINTS = 32  # zone_of in plain floats up to this many points
JOIN_M = 1.0  # ... plus this, a box's error on the ground: where a newborn may take over a lost track's sides


@dataclass(frozen=True, slots=True)
class Crossing:
    track_id: int
    line: str
    direction: str  # "+" or "-"


@dataclass(slots=True)
class Geometry:
    config: GeometryConfig
    _h: np.ndarray = field(init=False)
    _h_xy: np.ndarray = field(init=False)  # views of _h, made once (to_ground's every call)
    _h_1: np.ndarray = field(init=False)
    _zones: list[tuple[str, np.ndarray]] = field(init=False)
    _edges: list[tuple[str, list[tuple[float, float, float, float]]]] = field(init=False)

    def __post_init__(self) -> None:
        self._h = np.asarray(self.config.homography, dtype=np.float64)
        self._h_xy, self._h_1 = self._h[:, :2].T, self._h[:, 2]
        self._zones = [(z.name, np.asarray(z.polygon, dtype=np.float64)) for z in self.config.zones]
        # each zone's edges (x0, y0, x1, y1) in plain floats, for in_polygon
        self._edges = [(name, list(zip(*poly.T.tolist(), *np.roll(poly, -1, axis=0).T.tolist(), strict=True)))
                       for name, poly in self._zones]

    def to_ground(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) image pixels -> (N, 2) ground metres."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        hom = pts @ self._h_xy + self._h_1
        w = hom[:, 2:3]
        w = np.where(np.abs(w) < 1e-12, 1e-12, w)
        return hom[:, :2] / w

    def metres_per_pixel(self, points: np.ndarray) -> np.ndarray:
        """Local ground scale at (N, 2) image points: metres spanned by one pixel, horizontally."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        a = self.to_ground(pts)
        b = self.to_ground(pts + np.array([1.0, 0.0]))
        return np.linalg.norm(b - a, axis=1)

    def zone_of(self, ground: np.ndarray) -> list[str | None]:
        """The first zone containing each (N, 2) ground point, or None."""
        pts = np.asarray(ground, dtype=np.float64).reshape(-1, 2)
        if len(pts) <= _FEW_POINTS:  # a few tracks (the usual tick): plain floats, the same decisions
            return [next((name for name, edges in self._edges if in_polygon(x, y, edges)), None)
                    for x, y in pts.tolist()]
        return self.zones_by_arrays(pts)

    def zones_by_arrays(self, pts: np.ndarray) -> list[str | None]:
        """`zone_of` (N, 2) points on arrays, zone by zone (for many points; the code `zone_of` was before)."""
        out: list[str | None] = [None] * len(pts)
        for name, poly in self._zones:
            inside = points_in_polygon(pts, poly)
            for i in np.flatnonzero(inside):
                if out[i] is None:
                    out[i] = name
        return out

    def crossings(self, track_ids: np.ndarray, prev: np.ndarray, cur: np.ndarray) -> list[Crossing]:
        """Count-line crossings of the segments prev[i] -> cur[i] (ground metres) for each track."""
        found: list[Crossing] = []
        if not len(track_ids):
            return found
        for ln in self.config.lines:
            sign = segment_crossings(prev, cur, np.asarray(ln.a), np.asarray(ln.b))
            for i in np.flatnonzero(sign):
                found.append(Crossing(int(track_ids[i]), ln.name, "+" if sign[i] > 0 else "-"))
        return found


class LineCounter:
    """Count-line crossings with hysteresis, the rule the cloud counts records by (firmware.installer.countaudit):
    each track's side of each line is the last side it was seen beyond `band` metres on (a track within the
    band keeps the side it had), remembered across ticks where it is unseen; a crossing is due when a track is
    seen beyond the band on the other side, within the line's length, and counts, once, when the track has held
    that side for `hold_s` (no sighting beyond the band back on the old side within `hold_s` of the first one on
    the new side: a swing back cancels it). So a track jittering on the line counts nothing, a box that jumps
    across and back counts nothing, and one that crossed while the detector missed it counts when it is seen
    again (and held). With `hold_s` 0 a crossing counts on the tick it is seen.

    Three refinements, each off by default (so the rule is countaudit.path_crossings', the cloud's on a path),
    on in the loop by [geometry] (chosen by leave-one-scene-out, bench/counting_loso.py, bench/COUNTING.md):
    `restart`, a crossing due is held from the track's last sighting back within the band, so it counts once
    `hold_s` has passed with no sighting of the track but beyond the band on the new side (a box jittering
    within the band after a false excursion does not hold it while it is seen there; a track that ends there
    counts `hold_s` after its last sighting); `smooth_s`, the point counted is the track's ground point
    averaged exponentially over that time constant (in tick time, so the same at any rate); `join_s`, a track
    seen for the first time takes over the sides of the nearest track unseen now, last seen within `join_s`
    and no further than JOIN_M plus WALK_MPS for the time between (a walker whose track ended at the line and
    was born again beyond it counts once; a crossing the old track had due counts as its).

    Holds track ids, a side per line and, with `smooth_s` or `join_s`, one point per track; a track unseen for
    `forget_s` is forgotten, and only those seen within `join_s` are looked at for joining."""

    def __init__(self, lines: Sequence[LineConfig], band: float = 0.5, forget_s: float = FORGET_S,
                 hold_s: float = 0.0, join_s: float = 0.0, smooth_s: float = 0.0, restart: bool = False) -> None:
        self.names = [ln.name for ln in lines]
        self.band = float(band)
        self.forget_s = float(forget_s)
        self.hold_s = float(hold_s)
        self.join_s = float(join_s)
        self.smooth_s = float(smooth_s)
        self.restart = bool(restart)
        # track id -> (when last seen, its point as counted there): only with join_s or smooth_s
        self._last: dict[int, tuple[float, np.ndarray]] = {}
        self._joinable: dict[int, None] = {}  # tracks seen within join_s that no newborn has taken, oldest first
        a = np.array([ln.a for ln in lines], dtype=np.float64).reshape(-1, 2)
        b = np.array([ln.b for ln in lines], dtype=np.float64).reshape(-1, 2)
        length = np.hypot(*(b - a).T)
        unit = (b - a) / np.where(length > 0, length, 1.0)[:, None]
        # per line (a's x, a's y, unit x, unit y, length) in plain floats, for line_sides
        self._lines = [(ax, ay, ux, uy, n) for (ax, ay), (ux, uy), n in
                       zip(a.tolist(), unit.tolist(), length.tolist(), strict=True)]
        self._side: dict[int, np.ndarray] = {}  # track id -> side per line: +1 left, -1 right, 0 not yet known
        self._seen: dict[int, float] = {}  # track id -> when last seen
        # track id -> (side it crossed to per line, 0: none due; when first seen there): crossings held, not counted
        self._due: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._pruned_at = float("-inf")

    def __len__(self) -> int:
        return len(self._side)

    def update(self, track_ids: np.ndarray, xy: np.ndarray, t_s: float) -> list[Crossing]:
        """The crossings completed by now (held for `hold_s`) by the tracks seen now, `track_ids` (N,) at ground
        points `xy` (N, 2), or earlier (a track unseen now whose crossing's hold has run out counts now)."""
        found = self._confirm(t_s) if self._due else []
        ids = np.asarray(track_ids).reshape(-1)
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if self.join_s > 0 or self.smooth_s > 0:
            xy = self._follow(ids, xy, t_s)
        if len(ids) and len(self.names):
            for tid, (x, y) in zip(ids.tolist(), xy.tolist(), strict=True):
                sides, insides = line_sides(x, y, self._lines, self.band)
                if not self._quiet(int(tid), sides, insides):
                    found += self._step(int(tid), sides, insides, t_s)
        for tid in ids.tolist():
            self._seen[int(tid)] = t_s
        if t_s - self._pruned_at >= min(self.forget_s, 10.0):
            self._prune(t_s)
        return found

    def _quiet(self, tid: int, now: list[int], inside: list[bool]) -> bool:
        """`_step` in plain Python for the common case, a known track with no crossing due that crosses
        nothing now (its sides are updated where it is beyond the band); False, and nothing done, otherwise."""
        side = self._side.get(tid)
        if side is None or tid in self._due:
            return False
        old = side.tolist()
        for n, s, i in zip(now, old, inside, strict=True):
            if n and s and n != s and i:
                return False
        for k, n in enumerate(now):
            if n and n != old[k]:
                side[k] = n
        return True

    def _step(self, tid: int, now: list[int], inside: list[bool], t_s: float) -> list[Crossing]:
        """A track's sides `now` (+1, -1, 0 within the band, per line) and whether it is along each line
        (`inside`): the crossings it completes now; a crossing seen is held (`_due`) when `hold_s` is set. In
        plain Python over the lines (a few), the state in its arrays as before."""
        side = self._side.get(tid)
        if side is None:
            self._side[tid] = np.array(now, np.int8)
            return []
        old, now = side.tolist(), list(now)
        if tid in self._due:
            now = self._held(tid, now, old, t_s)
        crossed = [n != 0 and s != 0 and n != s and i for n, s, i in zip(now, old, inside, strict=True)]
        if self.hold_s > 0 and any(crossed):
            to, since = self._due.setdefault(tid, (np.zeros(len(old), np.int8), np.zeros(len(old))))
            for k, c in enumerate(crossed):
                if c:
                    to[k], since[k], now[k] = now[k], t_s, 0
            crossed = [False] * len(crossed)
        out = [Crossing(tid, self.names[k], "+" if now[k] > 0 else "-") for k, c in enumerate(crossed) if c]
        for k, n in enumerate(now):
            if n != 0:
                side[k] = n
        return out

    def _held(self, tid: int, now: list[int], old: list[int], t_s: float) -> list[int]:
        """A track with crossings held (`_due`) seen at sides `now` (its sides were `old`): each held crossing
        is cancelled where it is seen back beyond the band on the old side, held from now on where it is seen
        back within the band (`restart`); returns `now` with the lines still held at 0 (nothing to decide)."""
        to, since = self._due[tid]
        held = to.tolist()
        for k, (n, was) in enumerate(zip(now, old, strict=True)):
            if held[k] != 0:
                if self.restart and n == 0:  # seen back within the band: the new side held from its next sighting
                    since[k] = t_s
                if n == was:  # seen beyond the band on the old side again within the hold
                    to[k] = held[k] = 0
        if not any(held):
            del self._due[tid]
        return [0 if h != 0 else n for h, n in zip(held, now, strict=True)]

    def _confirm(self, t_s: float) -> list[Crossing]:
        """Count the crossings held for `hold_s` by now: the track's side becomes the one it crossed to."""
        out: list[Crossing] = []
        for tid in list(self._due):
            to, since = self._due[tid]
            held, when = to.tolist(), since.tolist()
            ripe = [k for k, (d, w) in enumerate(zip(held, when, strict=True)) if d != 0 and t_s - w >= self.hold_s]
            if not ripe:
                continue
            out += [Crossing(tid, self.names[k], "+" if held[k] > 0 else "-") for k in ripe]
            side = self._side[tid]
            for k in ripe:
                side[k], to[k] = held[k], 0
            if not any(to.tolist()):
                del self._due[tid]
        return out

    def _prune(self, t_s: float) -> None:
        self._pruned_at = t_s
        gone = [tid for tid, seen in self._seen.items() if t_s - seen > self.forget_s]
        for tid in gone:
            del self._seen[tid]
            self._side.pop(tid, None)
            self._due.pop(tid, None)
            self._last.pop(tid, None)

    def _follow(self, ids: np.ndarray, xy: np.ndarray, t_s: float) -> np.ndarray:
        """Each seen track's point as counted: smoothed over `smooth_s` (an exponential average in time, so a
        box's jitter does not take it across the band), and a newborn's sides taken over from a track that
        ended near where it is born (`join_s`): a track lost and born again as another id is one walker."""
        out = xy.copy()
        fresh = []
        for j, tid in enumerate(ids.tolist()):
            last = self._last.get(tid)
            if last is None:
                fresh.append(j)
                continue
            when, at = last
            if self.smooth_s > 0:
                out[j] = at + (1.0 - math.exp(-max(t_s - when, 0.0) / self.smooth_s)) * (xy[j] - at)
        if fresh and self.join_s > 0:
            self._join(ids, xy, fresh, t_s)
        for j, tid in enumerate(ids.tolist()):
            self._last[tid] = (t_s, out[j])
            if self.join_s > 0:
                self._joinable.pop(tid, None)
                self._joinable[tid] = None  # to the end: the order is that of last sightings
        return out

    def _join(self, ids: np.ndarray, xy: np.ndarray, fresh: list[int], t_s: float) -> None:
        """Newborns (`fresh`: indices into ids) take the sides of the nearest track unseen now, last seen
        within `join_s` no further than JOIN_M plus a walker's top speed for the time between."""
        while self._joinable:  # forget what ended too long ago (oldest first)
            tid = next(iter(self._joinable))
            last = self._last.get(tid)
            if last is not None and t_s - last[0] <= self.join_s:
                break
            del self._joinable[tid]
        seen_now = set(ids.tolist())
        ended = [tid for tid in self._joinable if tid not in seen_now and tid in self._side]
        if not ended:
            return
        gap_s = t_s - np.array([self._last[t][0] for t in ended])
        at = np.array([self._last[t][1] for t in ended]).reshape(-1, 2)
        born = [j for j in fresh if int(ids[j]) not in self._side]
        for j, k in join_pairs(xy[born], at, gap_s):
            tid = int(ids[born[j]])
            old = ended[k]
            side = self._side[old].copy()
            due = self._due.get(old)
            if due is not None:  # its held crossing counts (as the old track's) unless it comes back
                np.copyto(side, due[0], where=due[0] != 0)
            self._side[tid] = side
            del self._joinable[old]


def line_sides(x: float, y: float, lines: Sequence[tuple[float, float, float, float, float]],
               band: float) -> tuple[list[int], list[bool]]:
    """The ground point (x, y)'s side of each line (a's x, a's y, unit x, unit y, length): +1 left of a -> b
    beyond `band` metres, -1 right beyond it, 0 within it; and whether it lies along the line's length. In
    plain floats, the same operations as numpy's on arrays (so the same bits): a few tracks and lines a tick,
    where each numpy call's cost would be most of the work."""
    sides, insides = [], []
    for ax, ay, ux, uy, length in lines:
        rx, ry = x - ax, y - ay
        signed = ux * ry - uy * rx  # > 0: left of a -> b
        along = ux * rx + uy * ry
        sides.append(1 if signed > band else -1 if signed < -band else 0)
        insides.append(along >= 0 and along <= length)
    return sides, insides


def join_pairs(born: np.ndarray, ended_at: np.ndarray, gap_s: np.ndarray) -> list[tuple[int, int]]:
    """The join rule (LineCounter's `join_s`, the demographics' chains): (newborn, ended track) index pairs,
    nearest first, each newborn and each ended track in at most one. A newborn at `born` (N, 2) may take an
    ended track last seen at `ended_at` (M, 2) `gap_s` (M,) seconds ago no further than JOIN_M plus a walker's
    top speed for that time (the caller keeps only those within its join time)."""
    born = np.asarray(born, dtype=np.float64).reshape(-1, 2)
    at = np.asarray(ended_at, dtype=np.float64).reshape(-1, 2)
    reach = JOIN_M + WALK_MPS * np.asarray(gap_s, dtype=np.float64).reshape(-1)
    pairs: list[tuple[float, int, int]] = []  # (distance, newborn's index, ended track's index)
    for j in range(len(born)):
        dist = np.hypot(*(at - born[j]).T)
        pairs += [(float(dist[m]), j, m) for m in np.flatnonzero(dist <= reach).tolist()]
    out: list[tuple[int, int]] = []
    took_born: set[int] = set()
    took_ended: set[int] = set()
    for _, j, m in sorted(pairs):
        if j in took_born or m in took_ended:
            continue
        took_born.add(j)
        took_ended.add(m)
        out.append((j, m))
    return out


def points_in_polygon(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule, vectorised over points."""
    x, y = pts[:, 0:1], pts[:, 1:2]
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    straddle = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    hits = straddle & (x < x_at)
    return (np.count_nonzero(hits, axis=1) % 2) == 1


def in_polygon(x: float, y: float, edges: Sequence[tuple[float, float, float, float]]) -> bool:
    """`points_in_polygon` for one point, the polygon as its edges (x0, y0, x1, y1), in plain floats: the same
    operations in the same order, so the same decision (an edge that does not straddle the point's height is
    never divided by: numpy's division there gave inf or NaN, which the straddle test discarded)."""
    inside = False
    for x0, y0, x1, y1 in edges:
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def segment_crossings(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For segments p[i] -> q[i] against the line segment a -> b: +1 when crossing from the right of a->b to
    its left, -1 the other way, 0 when not crossing. A point exactly on the line counts as the left side,
    so a track that stops on the line and goes back is not counted twice."""
    p = np.asarray(p, dtype=np.float64).reshape(-1, 2)
    q = np.asarray(q, dtype=np.float64).reshape(-1, 2)
    d = b - a
    side_p = d[0] * (p[:, 1] - a[1]) - d[1] * (p[:, 0] - a[0]) >= 0  # True = left (or on)
    side_q = d[0] * (q[:, 1] - a[1]) - d[1] * (q[:, 0] - a[0]) >= 0
    changed = side_p != side_q
    # the crossing point must lie within the segment a-b
    e = q - p
    denom = d[0] * e[:, 1] - d[1] * e[:, 0]  # d x e
    with np.errstate(divide="ignore", invalid="ignore"):
        u = ((p[:, 0] - a[0]) * e[:, 1] - (p[:, 1] - a[1]) * e[:, 0]) / denom  # (p - a) x e / (d x e)
    within = (u >= 0.0) & (u <= 1.0) & (denom != 0)
    out = np.zeros(len(p), dtype=np.int8)
    hit = changed & within
    out[hit & side_q] = 1
    out[hit & ~side_q] = -1
    return out

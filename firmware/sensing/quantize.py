"""Quantization: from a tracker's tracks (pixels, exact times) to records with nothing finer than the
configured grid, time bucket, size class and heading sector. Pure: time is an argument.

Nothing finer than the bucket in value, order or count: `Buckets` holds a bucket's records until it ends and
then releases one record per pseudonym (its dominant cell, size, heading and zone: the most frequent, ties
broken by value, never by time), sorted by (epoch, pseudonym). So neither how many times a track was seen
within a bucket, nor in what order, nor when, can be read from what leaves. The loop (firmware.sensing.loop)
releases every track record through it.

Each record also carries the count-line crossings the loop's line counter (geometry.LineCounter) confirmed for
its track in that bucket, as counts per (line, direction), sorted: the same crossings the loop counts and
releases as line counts, so a recount from records equals the device's own counts per bucket, and nothing of
their order or time within the bucket leaves. A track the counter credits with a crossing in a bucket where no
emit tick sampled it (seen only between emit ticks, or confirmed after `count_hold_s` while unseen) still gets
that bucket's record, made from its sighting at the crossing (or its last one before)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

import numpy as np

from firmware.config.sensing import QuantizeConfig
from firmware.sensing.geometry import Geometry
from firmware.sensing.pseudonym import Pseudonymizer
from firmware.sensing.records import HEADING_SECTORS, SIZE_CLASSES, QuantizedTrack


class TrackLike(Protocol):
    track_id: int
    box: tuple[float, float, float, float]  # xyxy, source-image pixels
    velocity: tuple[float, float]  # box-centre pixels per second


@dataclass(frozen=True, slots=True)
class GroundState:
    """Where tracks stand on the ground at one instant, before quantization (on-device only)."""

    track_ids: np.ndarray  # (N,) int64
    xy: np.ndarray  # (N, 2) metres
    velocity: np.ndarray  # (N, 2) metres per second
    height_m: np.ndarray  # (N,) apparent height


_HORIZON = 0.5  # seconds: how far ahead a foot point is projected for its ground velocity


class Quantizer:
    def __init__(self, config: QuantizeConfig, geometry: Geometry, pseudonyms: Pseudonymizer) -> None:
        self.config = config
        self.geometry = geometry
        self.pseudonyms = pseudonyms

    def ground(self, tracks: Sequence[TrackLike]) -> GroundState:
        """Each track's foot point (its box's bottom centre) on the ground, its ground velocity (the foot point
        projected `_HORIZON` ahead, differenced on the ground) and its apparent height (the box's, at the local
        ground scale: `Geometry.metres_per_pixel`). The points are made in plain floats, the same arithmetic as
        numpy's on arrays, and mapped in one `to_ground` call (three before): a few tracks a tick, where each
        numpy call's cost is most of the work. The same values to the bit as the arrays gave
        (tests/firmware/sensing/test_ground_reference.py)."""
        n = len(tracks)
        ids = np.fromiter((t.track_id for t in tracks), dtype=np.int64, count=n)
        feet, ahead, right, tall = [], [], [], []
        for t in tracks:
            x0, y0, x1, y1 = (float(v) for v in t.box)
            vx, vy = (float(v) for v in t.velocity)
            fx = (x0 + x1) * 0.5
            feet.append((fx, y1))
            ahead.append((fx + vx * _HORIZON, y1 + vy * _HORIZON))
            right.append((fx + 1.0, y1 + 0.0))  # a pixel to the right (metres_per_pixel's)
            tall.append(y1 - y0)
        if n == 1:  # numpy maps a single point by another product (a vector's), rounded otherwise: as it was
            g = self.geometry.to_ground(np.array(feet + ahead, dtype=np.float64))
            mpp = self.geometry.metres_per_pixel(np.array(feet, dtype=np.float64))
        else:
            g = self.geometry.to_ground(np.array(feet + ahead + right, dtype=np.float64).reshape(-1, 2))
            d = g[2 * n:] - g[:n]
            d *= d
            mpp = np.sqrt(d[:, 0] + d[:, 1])  # np.linalg.norm(axis=1)'s arithmetic, without its checks
        xy = g[:n]
        return GroundState(ids, xy, (g[n:2 * n] - xy) / _HORIZON, np.array(tall, dtype=np.float64) * mpp)

    def fields(self, state: GroundState) -> tuple[np.ndarray, list[str | None], np.ndarray, np.ndarray, np.ndarray]:
        """Each track's grid cell, zone, size class index, ground speed and heading sector (arrays but the zones)."""
        cfg = self.config
        cells = np.floor(state.xy / cfg.grid_m).astype(np.int64)
        zones = self.geometry.zone_of(state.xy)
        sizes = np.searchsorted(np.asarray(cfg.size_edges_m), state.height_m, side="right")
        speed = np.hypot(state.velocity[:, 0], state.velocity[:, 1])
        angle = np.arctan2(state.velocity[:, 1], state.velocity[:, 0])
        sectors = np.round(angle / (2 * math.pi / HEADING_SECTORS)).astype(np.int64) % HEADING_SECTORS
        return cells, zones, sizes, speed, sectors

    def quantize(self, state: GroundState, wall: float) -> list[QuantizedTrack]:
        cfg = self.config
        t_bucket = int(wall // cfg.time_bucket_s) * cfg.time_bucket_s
        cells, zones, sizes, speed, sectors = self.fields(state)
        out = []
        # (as plain numbers: the same values, without a numpy scalar per field)
        for tid, (cx, cy), size, v, sector, zone in zip(state.track_ids.tolist(), cells.tolist(), sizes.tolist(),
                                                       speed.tolist(), sectors.tolist(), zones, strict=True):
            epoch, pseud = self.pseudonyms.pseudonym(tid, wall)
            out.append(
                QuantizedTrack(
                    pseudonym=pseud,
                    epoch=epoch,
                    t=t_bucket,
                    cell=(cx, cy),
                    grid_m=cfg.grid_m,
                    size=SIZE_CLASSES[size],
                    heading=sector if v >= cfg.min_speed_mps else None,
                    zone=zone,
                )
            )
        return out


def cell_centre(cell: Sequence[int], grid_m: float) -> tuple[float, float]:
    return ((cell[0] + 0.5) * grid_m, (cell[1] + 0.5) * grid_m)


_V = TypeVar("_V", bound=Hashable)


def _dominant(values: Iterable[_V]) -> _V:
    """The most frequent value; a tie goes to the smallest (by its text), so time order never decides."""
    counts = Counter(values)
    top = max(counts.values())
    return min((v for v, n in counts.items() if n == top), key=lambda v: (v is None, repr(v)))


def merge_bucket(records: Sequence[QuantizedTrack], crossings: Iterable[tuple[str, str]] = ()) -> QuantizedTrack:
    """One pseudonym's records of one bucket as one record: each field its dominant value, and `crossings`
    ((line, direction) each, in any order) as counts per (line, direction), sorted."""
    first = records[0]
    tally = Counter(crossings)
    return replace(first, cell=_dominant(r.cell for r in records), size=_dominant(r.size for r in records),
                   heading=_dominant(r.heading for r in records), zone=_dominant(r.zone for r in records),
                   crossings=tuple((line, d, n) for (line, d), n in sorted(tally.items())))


Key = tuple[int, str]  # (key epoch, pseudonym)


class Buckets:
    """Collects the records of the current time bucket; `add(records, wall, crossed)` returns the records of
    the buckets that ended before `wall` (one per pseudonym each), `flush()` the current one.

    `crossed`: this tick's confirmed line crossings, each as (the crossing track's record at this tick, line,
    direction). Its crossings go to that pseudonym's record of the bucket; the record at the crossing stands in
    for the track's emit-tick records only when it has none in the bucket (decided when the bucket ends, so
    the order of ticks never decides)."""

    def __init__(self, bucket_s: int) -> None:
        self.bucket_s = bucket_s
        self._t: int | None = None
        self._held: dict[Key, list[QuantizedTrack]] = {}
        self._crossed: dict[Key, list[tuple[QuantizedTrack, str, str]]] = {}

    def add(self, records: Sequence[QuantizedTrack], wall: float,
            crossed: Sequence[tuple[QuantizedTrack, str, str]] = ()) -> list[QuantizedTrack]:
        t = int(wall // self.bucket_s) * self.bucket_s
        out = self.flush() if self._t is not None and t != self._t else []
        self._t = t
        for r in records:
            self._held.setdefault((r.epoch, r.pseudonym), []).append(r)
        for c in crossed:
            self._crossed.setdefault((c[0].epoch, c[0].pseudonym), []).append(c)
        return out

    def flush(self) -> list[QuantizedTrack]:
        held, crossed = self._held, self._crossed
        self._held, self._crossed, self._t = {}, {}, None
        out = []
        for k in sorted(held.keys() | crossed.keys()):
            cs = crossed.get(k, [])
            out.append(merge_bucket(held.get(k) or [r for r, _, _ in cs], [(line, d) for _, line, d in cs]))
        return out

"""The loop's per-tick code as it was before h-gatecpu2 cut its CPU (main at 4fabc62), kept verbatim as the
reference the faster code must reproduce to the bit (tests/firmware/sensing/test_loop_cpu_reference.py): each
function here replaces its new counterpart when patched in (`OldLineCounter`, and the test's `_old_code`)."""

from __future__ import annotations

import numpy as np

from firmware.sensing.geometry import Crossing, LineCounter
from firmware.sensing.quantize import GroundState
from firmware.sensing.records import SIZE_CLASSES, QuantizedTrack


def line_sides(xy: np.ndarray, a: np.ndarray, unit: np.ndarray, length: np.ndarray,
               band: float) -> tuple[np.ndarray, np.ndarray]:
    """LineCounter.update's sides and insides of the points `xy` (N, 2) against the lines (a, unit, length), as
    the array code gave them: (N, L) int8 and (N, L) bool."""
    rel = xy.reshape(-1, 1, 2) - a  # (N, L, 2)
    u = unit
    signed = u[:, 0] * rel[..., 1] - u[:, 1] * rel[..., 0]  # > 0: left of a -> b
    along = u[:, 0] * rel[..., 0] + u[:, 1] * rel[..., 1]
    now = np.where(signed > band, 1, np.where(signed < -band, -1, 0)).astype(np.int8)
    inside = (along >= 0) & (along <= length)
    return now, inside


def _lines(counter: LineCounter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.array([ln[:2] for ln in counter._lines], dtype=np.float64).reshape(-1, 2)
    unit = np.array([ln[2:4] for ln in counter._lines], dtype=np.float64).reshape(-1, 2)
    return a, unit, np.array([ln[4] for ln in counter._lines], dtype=np.float64)


def line_update(self: LineCounter, track_ids: np.ndarray, xy: np.ndarray, t_s: float) -> list[Crossing]:
    found = line_confirm(self, t_s) if self._due else []
    ids = np.asarray(track_ids).reshape(-1)
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if self.join_s > 0 or self.smooth_s > 0:
        xy = self._follow(ids, xy, t_s)
    if len(ids) and len(self.names):
        now, inside = line_sides(xy, *_lines(self), self.band)
        sides, insides = now.tolist(), inside.tolist()
        for j, tid in enumerate(ids.tolist()):
            if not self._quiet(int(tid), sides[j], insides[j]):
                found += line_step(self, int(tid), now[j], inside[j], t_s)
    for tid in ids.tolist():
        self._seen[int(tid)] = t_s
    if t_s - self._pruned_at >= min(self.forget_s, 10.0):
        self._prune(t_s)
    return found


def line_step(self: LineCounter, tid: int, now: np.ndarray, inside: np.ndarray, t_s: float) -> list[Crossing]:
    side = self._side.get(tid)
    if side is None:
        self._side[tid] = now.copy()
        return []
    due = self._due.get(tid)
    if due is not None:
        to, since = due
        if self.restart:  # seen back within the band: the new side is held from its next sighting there
            since[(to != 0) & (now == 0)] = t_s
        back = (to != 0) & (now == side)  # seen beyond the band on the old side again within the hold
        to[back] = 0
        held = to != 0
        if not held.any():
            del self._due[tid]
        now = np.where(held, 0, now).astype(np.int8)  # a line with a crossing due: nothing more to decide
    crossed = (now != 0) & (side != 0) & (now != side) & inside
    if self.hold_s > 0 and crossed.any():
        to, since = self._due.setdefault(tid, (np.zeros(len(side), np.int8), np.zeros(len(side))))
        to[crossed], since[crossed] = now[crossed], t_s
        now = np.where(crossed, 0, now).astype(np.int8)
        crossed[:] = False
    out = [Crossing(tid, self.names[k], "+" if now[k] > 0 else "-") for k in np.flatnonzero(crossed)]
    np.copyto(side, now, where=now != 0)
    return out


def line_confirm(self: LineCounter, t_s: float) -> list[Crossing]:
    """Count the crossings held for `hold_s` by now: the track's side becomes the one it crossed to."""
    out: list[Crossing] = []
    for tid in list(self._due):
        to, since = self._due[tid]
        ripe = (to != 0) & (t_s - since >= self.hold_s)
        if not ripe.any():
            continue
        out += [Crossing(tid, self.names[k], "+" if to[k] > 0 else "-") for k in np.flatnonzero(ripe)]
        side = self._side[tid]
        side[ripe] = to[ripe]
        to[ripe] = 0
        if not to.any():
            del self._due[tid]
    return out


class OldLineCounter(LineCounter):
    """The line counter with its old update, step and confirmation (the rest is shared)."""

    update = line_update  # type: ignore[assignment]


def zone_of(self, ground: np.ndarray) -> list[str | None]:
    """The old zone_of: on arrays, zone by zone (the code kept for many points)."""
    return self.zones_by_arrays(np.asarray(ground, dtype=np.float64).reshape(-1, 2))


def quantize(self, state: GroundState, wall: float) -> list[QuantizedTrack]:
    cfg = self.config
    t_bucket = int(wall // cfg.time_bucket_s) * cfg.time_bucket_s
    cells, zones, sizes, speed, sectors = self.fields(state)  # (unchanged: the same arrays)
    out = []
    for i in range(len(state.track_ids)):
        epoch, pseud = self.pseudonyms.pseudonym(int(state.track_ids[i]), wall)
        out.append(
            QuantizedTrack(
                pseudonym=pseud,
                epoch=epoch,
                t=t_bucket,
                cell=(int(cells[i, 0]), int(cells[i, 1])),
                grid_m=cfg.grid_m,
                size=SIZE_CLASSES[int(sizes[i])],
                heading=int(sectors[i]) if speed[i] >= cfg.min_speed_mps else None,
                zone=zones[i],
            )
        )
    return out


def person_pixels(self, min_score: float, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """What the loop did with a frame's detections: persons(), then to_pixels() and scores."""
    persons = self.persons(min_score)
    return persons.to_pixels(width, height), persons.scores

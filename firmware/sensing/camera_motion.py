"""The camera's own motion, told from the tracks: when the camera pans or shakes, every person moves in the
image at once. Pure functions on plain floats (a handful of pairs a tick), for the tracker's `camera_motion`."""

from __future__ import annotations

import numpy as np

PAIR_IOU = 0.3  # a track and the detection it overlaps most count as a pair from this IoU
SHRINK = 4.0  # the median shift is shrunk towards 0 by its noise times this (more pairs, less shrinking)


def median(v: list[float]) -> float:
    v = sorted(v)
    h = len(v) // 2
    return v[h] if len(v) % 2 else 0.5 * (v[h - 1] + v[h])


def shrunk(v: list[float], k: float, floor: float) -> float:
    """The median of `v`, shrunk towards zero as m^2 / (m^2 + k sd^2) (sd from the median absolute deviation,
    at least `floor`): a median within its own noise of zero counts for little."""
    m = median(v)
    sd = max(1.4826 * median([abs(x - m) for x in v]), floor)
    return m * m * m / (m * m + k * sd * sd) if m else 0.0


def estimate(predicted: np.ndarray, seen: np.ndarray) -> tuple[float, float, float] | None:
    """The shift (x, y, pixels) and the log size ratio that take `predicted` boxes to `seen` ones, one pair per
    row (centre x, centre y, width, height), each the pairs' median shrunk towards zero by its spread over the
    number of pairs: a fixed camera's median is noise, and shrinks to almost nothing. None under two pairs."""
    n = len(predicted)
    if n < 2:
        return None
    k = SHRINK * 1.25**2 / n  # (the median's variance is about (1.25 sd)^2 / n)
    floor = 0.02 * median(predicted[:, 3].tolist())  # a spread below 2% of a height is not believed
    r = (seen[:, :2] - predicted[:, :2]).tolist()
    sx = shrunk([p[0] for p in r], k, floor)
    sy = shrunk([p[1] for p in r], k, floor)
    scale = shrunk(np.log(seen[:, 3] / np.maximum(predicted[:, 3], 1.0)).tolist(), k, 0.02)
    return sx, sy, scale

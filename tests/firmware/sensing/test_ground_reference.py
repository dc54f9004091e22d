"""`Quantizer.ground` in plain floats and one `to_ground` call (firmware.sensing.quantize) gives, to the bit, what
the array code it replaced gave (kept here verbatim as the reference): the same ids, ground points, velocities and
heights, for any number of tracks (one track included: numpy maps a single point by a vector product that rounds
otherwise, which a version mapping every point in one call got wrong) and boxes given as numpy float32 too."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.sensing.quantize import GroundState, Quantizer
from tests.firmware.sensing.test_quantize import T, quantizer


def _old_ground(q: Quantizer, tracks) -> GroundState:
    n = len(tracks)
    ids = np.fromiter((t.track_id for t in tracks), dtype=np.int64, count=n)
    boxes = np.array([t.box for t in tracks], dtype=np.float64).reshape(n, 4)
    vel = np.array([t.velocity for t in tracks], dtype=np.float64).reshape(n, 2)
    feet = np.column_stack(((boxes[:, 0] + boxes[:, 2]) * 0.5, boxes[:, 3]))
    horizon = 0.5
    both = q.geometry.to_ground(np.vstack((feet, feet + vel * horizon)))
    xy, ahead = both[:n], both[n:]
    mpp = q.geometry.metres_per_pixel(feet)
    height = (boxes[:, 3] - boxes[:, 1]) * mpp
    return GroundState(ids, xy, (ahead - xy) / horizon, height)


_px = st.floats(-2000, 5000, allow_nan=False)
_track = st.builds(T, st.integers(0, 10**6), st.tuples(_px, _px, _px, _px),
                   st.tuples(st.floats(-500, 500), st.floats(-500, 500)))


def _same(a: GroundState, b: GroundState) -> None:
    for name in ("track_ids", "xy", "velocity", "height_m"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x.dtype, x.shape, x.tobytes()) == (y.dtype, y.shape, y.tobytes()), name


@settings(max_examples=300, deadline=None)
@given(st.lists(_track, max_size=40), st.booleans())
def test_the_ground_state_is_the_old_one(tracks, float32):
    if float32:
        tracks = [T(t.track_id, tuple(np.float32(v) for v in t.box), t.velocity) for t in tracks]
    q = quantizer()
    _same(q.ground(tracks), _old_ground(q, tracks))


def test_the_ground_state_is_the_old_one_on_random_crowds():
    rng, q = np.random.default_rng(5), quantizer()
    for n in [0, 1, 1, 1, 2, 3, *rng.integers(1, 200, 40).tolist()]:
        b = rng.uniform(-100, 1000, (n, 4))
        v = rng.normal(0, 100, (n, 2))
        tracks = [T(i, tuple(b[i].tolist()), tuple(v[i].tolist())) for i in range(n)]
        _same(q.ground(tracks), _old_ground(q, tracks))

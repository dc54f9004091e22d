"""The gate's faster motion and packing (firmware.sensing.motion, firmware.sensing.gating) against the
reference they replaced (bench.lib.gate_reference, the code as it was): the same boxes, backgrounds and
regions to the bit, on random masks, random box sets and streams of frames."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bench.lib import gate_reference as ref
from firmware.config.sensing import DetectorConfig
from firmware.sensing.gating import Gate, pack
from firmware.sensing.motion import MotionDetector, _dilate5
from hal.tflite import tile_grid

GRID = tile_grid(3, 2, 0.3)
TILE = (GRID[0, 2] - GRID[0, 0], GRID[0, 3] - GRID[0, 1])
T = namedtuple("T", "box velocity")

masks = st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(
    lambda hw: hnp.arrays(bool, hw, elements=st.booleans()))


@given(masks, st.sampled_from([0.0, 0.0002, 0.01, 0.05, 0.2]))
@settings(max_examples=150, deadline=None)
def test_the_dilation_and_the_blobs_are_the_reference_ones(mask, min_area):
    grown = _dilate5(mask, np.empty_like(mask), np.empty_like(mask))
    assert np.array_equal(grown, ref._dilate(ref._dilate(mask)))
    new = MotionDetector(min_area=min_area)._blobs(grown, np.zeros(mask.shape, np.int32))
    old = ref.ReferenceMotion(min_area=min_area)._blobs(grown)
    assert new.shape == old.shape and np.array_equal(new, old)


def _frames(size, n, seed, view=False):
    """A textured scene with noise, dark blocks walking across it, a light switched on half way."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    bg = 110 + 40 * np.sin(xx / 23.0) * np.cos(yy / 17.0)
    for k in range(n):
        f = bg + rng.normal(0, 4, bg.shape) + (90 if k == n // 2 else 0)
        for p in range(rng.integers(0, 6)):
            x, y = int((k * 7 + p * 131) % w), int((p * 53 + k * 3) % h)
            f[y:y + h // 5, x:x + w // 12] = rng.integers(0, 60)
        img = np.clip(np.repeat(f[:, :, None], 3, axis=2), 0, 255).astype(np.uint8)
        yield img[:, ::-1] if view else img  # a view with negative strides: the reading path for any array


@pytest.mark.parametrize("size,view", [((900, 600), False), ((300, 200), False), ((301, 203), False),
                                       ((640, 480), True), ((64, 40), False)])
def test_the_motion_boxes_and_background_are_the_reference_ones(size, view):
    new, old = MotionDetector(), ref.ReferenceMotion()
    found = 0
    for img in _frames(size, 40, seed=size[0], view=view):
        a, b = new.boxes(img), old.boxes(img)
        assert a.shape == b.shape and np.array_equal(a, b)
        assert np.array_equal(new._bg, old._bg) and new.share == old.share
        found += len(a)
    assert found  # the stream had motion in it
    new.reset()
    assert new._bg is None and new._work is None


def test_the_work_buffers_hold_nothing_of_the_frame_once_boxes_returned():
    m = MotionDetector()
    for img in _frames((300, 200), 5, seed=1):
        m.boxes(img)
        assert m._work is not None
        for name in ("grey", "pairs", "small", "size", "moved", "rows", "grown", "labels"):
            assert not getattr(m._work, name).any(), name


coord = st.floats(-0.1, 1.1, allow_nan=False)
boxes = st.lists(st.tuples(coord, coord, coord, coord), max_size=25)


@given(boxes, st.sampled_from([TILE, (0.2, 0.3), (1.0, 1.0), (0.05, 0.05)]))
@settings(max_examples=300, deadline=None)
def test_the_regions_are_the_reference_ones_whatever_the_boxes(rows, tile):
    b = np.array(rows, dtype=np.float64).reshape(-1, 4)
    assert np.array_equal(pack(b, tile), ref.pack(b, tile))
    ordered = np.column_stack((np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])))
    clustered = np.round(ordered * 8) / 8  # equal edges, ties in the order
    for c in (ordered, clustered):
        assert np.array_equal(pack(c, tile), ref.pack(c, tile))


def test_the_gate_plans_the_reference_regions_frame_by_frame():
    cfg = DetectorConfig(tiles=(3, 2), overlap=0.3, gating="motion", max_invokes=4, sweep_s=1.0)
    new, old = Gate(cfg, GRID), ref.ReferenceGate(cfg, GRID)
    rng = np.random.default_rng(3)
    for k, img in enumerate(_frames((900, 600), 60, seed=7)):
        t = k / 7.0
        a, b = new.plan(img, t), old.plan(img, t)
        assert np.array_equal(a, b)
        n = int(rng.integers(0, 12))
        xy = rng.uniform(0, [700, 500], (n, 2))
        tracks = [T((x, y, x + rng.uniform(10, 120), y + rng.uniform(20, 200)), tuple(rng.normal(0, 40, 2)))
                  for x, y in xy]
        new.observe(tracks, (768, 576), t)
        old.observe(tracks, (768, 576), t)
        assert np.array_equal(new.predicted(t + 0.1), old.predicted(t + 0.1))
    assert new.stats == old.stats and new.stats.motion_frames

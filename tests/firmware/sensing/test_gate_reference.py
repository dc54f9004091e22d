"""The gate's faster motion and packing (firmware.sensing.motion, firmware.sensing.gating) give, to the bit, what
the code they replaced gave (the gate as of 6aa6124; checked then against a verbatim copy of it frame by frame,
0 of 795 PETS09 frames planned otherwise): digests of its outputs on fixed random masks, box sets and streams of
frames (integer pixels, so the inputs are the same bits on any machine), recorded from that code."""

from __future__ import annotations

import hashlib
from collections import namedtuple

import numpy as np
import pytest

from firmware.config.sensing import DetectorConfig
from firmware.sensing.gating import Gate, pack
from firmware.sensing.motion import MotionDetector, _dilate5
from hal.tflite import tile_grid

GRID = tile_grid(3, 2, 0.3)
TILE = (GRID[0, 2] - GRID[0, 0], GRID[0, 3] - GRID[0, 1])
T = namedtuple("T", "box velocity")


def _h(*arrays: np.ndarray) -> bytes:
    d = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        d.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return d.hexdigest()[:32].encode()


def test_the_dilation_and_the_blobs_are_the_old_ones():
    rng, dig = np.random.default_rng(11), hashlib.sha256()
    for _ in range(200):
        h, w = rng.integers(1, 41, 2)
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        for min_area in (0.0, 0.0002, 0.01, 0.05, 0.2):
            grown = _dilate5(mask, np.empty_like(mask), np.empty_like(mask))
            blobs = MotionDetector(min_area=min_area)._blobs(grown, np.zeros(mask.shape, np.int32))
            dig.update(_h(grown, blobs))
    assert dig.hexdigest()[:32] == "40455603f02547a74d82463ff9a89b7b"


def _frames(size, n, seed, view=False):
    """A textured scene with noise, dark blocks walking across it, a light switched on half way."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    bg = 70 + (xx * 7 + yy * 13) % 83 + (xx // 23 + yy // 17) % 2 * 20  # integers: the same bits on any machine
    for k in range(n):
        f = bg + rng.integers(-6, 7, bg.shape) + (90 if k == n // 2 else 0)
        for p in range(rng.integers(0, 6)):
            x, y = int((k * 7 + p * 131) % w), int((p * 53 + k * 3) % h)
            f[y:y + h // 5, x:x + w // 12] = rng.integers(0, 60)
        img = np.clip(np.repeat(f[:, :, None], 3, axis=2), 0, 255).astype(np.uint8)
        yield img[:, ::-1] if view else img  # a view with negative strides: the reading path for any array


MOTION = {
    ((900, 600), False): "fd1074b02a163ab28abba3d0e5eef67c",
    ((300, 200), False): "b81187104212246febdaf893bf6b3d40",
    ((301, 203), False): "6ddb7a428845e8eab84b570cdceb9266",
    ((640, 480), True): "afc98834f8ca703f2f34f79fd7765ba3",
    ((64, 40), False): "61a6199e7382e8b730f290d0b3c681a1",
}


@pytest.mark.parametrize("size,view", list(MOTION))
def test_the_motion_boxes_and_background_are_the_old_ones(size, view):
    new, dig, found = MotionDetector(), hashlib.sha256(), 0
    for img in _frames(size, 40, seed=size[0], view=view):
        b = new.boxes(img)
        dig.update(_h(b, new._bg, np.array([new.share])))
        found += len(b)
    assert found  # the stream had motion in it
    assert dig.hexdigest()[:32] == MOTION[(size, view)]
    new.reset()
    assert new._bg is None and new._work is None


def test_the_work_buffers_hold_nothing_of_the_frame_once_boxes_returned():
    m = MotionDetector()
    for img in _frames((300, 200), 5, seed=1):
        m.boxes(img)
        assert m._work is not None
        for name in ("grey", "pairs", "small", "size", "moved", "rows", "grown", "labels"):
            assert not getattr(m._work, name).any(), name


def test_the_regions_are_the_old_ones_whatever_the_boxes():
    rng, dig = np.random.default_rng(12), hashlib.sha256()
    for _ in range(400):
        b = rng.uniform(-0.1, 1.1, (int(rng.integers(0, 26)), 4))
        for tile in (TILE, (0.2, 0.3), (1.0, 1.0), (0.05, 0.05)):
            ordered = np.column_stack((np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])))
            clustered = np.round(ordered * 8) / 8  # equal edges, ties in the order
            for c in (b, ordered, clustered):
                dig.update(_h(pack(c, tile)))
    assert dig.hexdigest()[:32] == "7ff925b76b5bc393aaf1c56fc1f4bfa2"


def test_the_gate_plans_the_old_regions_frame_by_frame():
    cfg = DetectorConfig(tiles=(3, 2), overlap=0.3, gating="motion", max_invokes=4, sweep_s=1.0)
    new, rng, dig = Gate(cfg, GRID), np.random.default_rng(3), hashlib.sha256()
    for k, img in enumerate(_frames((900, 600), 60, seed=7)):
        t = k / 7.0
        dig.update(_h(new.plan(img, t)))
        n = int(rng.integers(0, 12))
        xy = rng.uniform(0, [700, 500], (n, 2))
        tracks = [T((x, y, x + rng.uniform(10, 120), y + rng.uniform(20, 200)), tuple(rng.normal(0, 40, 2)))
                  for x, y in xy]
        new.observe(tracks, (768, 576), t)
        dig.update(_h(new.predicted(t + 0.1)))
    assert dig.hexdigest()[:32] == "972286ccdf484be52642428123b9ad53"
    stats = new.stats
    assert (stats.frames, stats.invokes, stats.sweep_invokes, stats.motion_frames) == (60, 231, 52, 57)

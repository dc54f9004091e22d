"""The loop's per-tick code made cheaper (h-gatecpu2: the line counter's sides, the zones and the records in plain
floats, the detections to pixels in one step) gives, to the bit, what the code it replaced gave: that code is
kept verbatim in tests/firmware/sensing/loop_cpu_reference.py. Each rewritten helper against its old version on
random inputs (infinities, NaN, points on edges and vertices, degenerate lines and polygons), and a gated run of
the whole loop (motion gate, tracker, line counter, zones, records) ticked with the old code patched in against
one with the new: the same tick results, tick by tick."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.config.sensing import (
    DetectorConfig,
    GeometryConfig,
    LineConfig,
    LoopConfig,
    QuantizeConfig,
    TrackerConfig,
    ZoneConfig,
)
from firmware.sensing.gating import Gate
from firmware.sensing.geometry import Geometry, LineCounter, in_polygon, line_sides, points_in_polygon
from firmware.sensing.loop import SensorLoop
from firmware.sensing.pseudonym import Pseudonymizer
from firmware.sensing.quantize import GroundState, Quantizer
from firmware.sensing.tracker import Tracker
from hal.clock import FakeClock
from hal.detections import Detections
from hal.synthetic import SceneCamera, SceneDetector
from hal.tflite import tile_grid
from tests.firmware.sensing import loop_cpu_reference as ref

# coordinates on a coarse grid hit vertices, edges and ties; the wide ones everything else
_coarse = st.integers(-8, 8).map(float)
_wide = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
_any = st.floats(allow_nan=True, allow_infinity=True)
_coord = st.one_of(_coarse, _wide, _any)
_point = st.tuples(_coord, _coord)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.tuples(_coarse | _wide, _coarse | _wide), st.tuples(_coarse | _wide, _coarse | _wide)),
                min_size=1, max_size=4), st.lists(_point, min_size=1, max_size=12),
       st.sampled_from([0.0, 0.5, 1.0, 2.5]))
def test_the_sides_of_the_lines_are_the_old_ones(lines, points, band):
    counter = LineCounter([LineConfig(f"l{k}", a, b) for k, (a, b) in enumerate(lines)], band)
    with np.errstate(all="ignore"):  # (the arrays warn of infinities and NaN)
        old_now, old_inside = ref.line_sides(np.array(points, dtype=np.float64), *ref._lines(counter), counter.band)
    for j, (x, y) in enumerate(points):
        sides, insides = line_sides(x, y, counter._lines, counter.band)
        assert sides == old_now[j].tolist()
        assert insides == old_inside[j].tolist()


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_coarse | _wide, _coarse | _wide), min_size=0, max_size=7),
       st.lists(_point, min_size=1, max_size=12))
def test_a_point_in_a_polygon_is_decided_as_before(poly, points):
    pts = np.array(points, dtype=np.float64).reshape(-1, 2)
    polygon = np.array(poly, dtype=np.float64).reshape(-1, 2)
    with np.errstate(all="ignore"):
        old = points_in_polygon(pts, polygon).tolist()
    edges = list(zip(*polygon.T.tolist(), *np.roll(polygon, -1, axis=0).T.tolist(), strict=True))
    assert [in_polygon(x, y, edges) for x, y in pts.tolist()] == old


_walk = st.lists(st.lists(st.tuples(st.integers(0, 6), st.floats(-4.0, 4.0) | _coarse, st.floats(-30.0, 30.0)),
                         max_size=7), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(_walk, st.sampled_from([0.0, 0.3, 0.5]), st.booleans(), st.sampled_from([0.0, 2.0]),
       st.sampled_from([0.0, 0.4]), st.sampled_from([0.1, 0.5]))
def test_the_line_counter_counts_and_holds_as_before(frames, hold, restart, join, smooth, dt):
    """Tracks walking about two lines (one short, so the along test matters): the same crossings tick by tick
    and the same sides and held crossings, whatever the hold, restart, join and smoothing settings."""
    lines = [LineConfig("long", (0.0, -50.0), (0.0, 50.0)), LineConfig("short", (-2.0, 10.0), (2.0, 10.0))]
    kw = {"hold_s": hold, "restart": restart, "join_s": join, "smooth_s": smooth}
    new, old = LineCounter(lines, 0.5, **kw), ref.OldLineCounter(lines, 0.5, **kw)
    for k, seen in enumerate(frames):
        ids = np.array(sorted({tid for tid, _, _ in seen}), dtype=np.int64)
        xy = np.array([[x, y] for tid in ids for _, x, y in [next(p for p in seen if p[0] == tid)]]).reshape(-1, 2)
        assert new.update(ids, xy, k * dt) == old.update(ids, xy, k * dt)
        assert {t: s.tolist() for t, s in new._side.items()} == {t: s.tolist() for t, s in old._side.items()}
        assert ({t: (a.tolist(), b.tolist()) for t, (a, b) in new._due.items()}
                == {t: (a.tolist(), b.tolist()) for t, (a, b) in old._due.items()})


def _geometry() -> Geometry:
    return Geometry(GeometryConfig(zones=(
        ZoneConfig("west", ((-4.0, -4.0), (0.0, -4.0), (0.0, 4.0), (-4.0, 4.0))),
        ZoneConfig("mid", ((-1.0, -3.0), (3.0, -1.0), (1.0, 3.0))),  # overlapping west: the first one wins
        ZoneConfig("east", ((0.0, -4.0), (4.0, -4.0), (4.0, 4.0), (0.0, 4.0))))))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_point, st.tuples(_coord, _coord), st.floats(0, 5) | _any), max_size=40))
def test_the_zones_and_the_records_are_the_old_ones(rows):
    with np.errstate(all="ignore"):  # (infinities and NaN: numpy warns the same both ways)
        _zones_and_records(rows)


def _zones_and_records(rows):
    geo = _geometry()
    n = len(rows)
    xy = np.array([r[0] for r in rows], dtype=np.float64).reshape(n, 2)
    assert geo.zone_of(xy) == ref.zone_of(geo, xy)
    finite = np.isfinite(xy).all(1) if n else np.zeros(0, bool)  # (the cells of a NaN point fail both ways)
    state = GroundState(np.arange(n, dtype=np.int64)[finite] * 7 - 5, xy[finite],
                        np.array([r[1] for r in rows], dtype=np.float64).reshape(n, 2)[finite],
                        np.array([r[2] for r in rows], dtype=np.float64)[finite])
    q = [Quantizer(QuantizeConfig(), geo, Pseudonymizer(3600, lambda k: bytes(range(k)))) for _ in range(2)]
    for wall in (1_700_000_000.0, 1_700_003_601.5):
        assert q[0].quantize(state, wall) == ref.quantize(q[1], state, wall)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.tuples(_any, _any, _any, _any), _any, st.integers(0, 3)), max_size=20),
       st.floats(0, 1), st.integers(1, 4000), st.integers(1, 4000))
def test_the_detections_in_pixels_are_the_old_ones(rows, min_score, width, height):
    with np.errstate(all="ignore"):
        _detections(rows, min_score, width, height)


def _detections(rows, min_score, width, height):
    n = len(rows)
    dets = Detections(np.array([r[0] for r in rows], np.float32).reshape(n, 4),
                      np.array([r[1] for r in rows], np.float32), np.array([r[2] for r in rows], np.int32))
    boxes, scores = dets.person_pixels(min_score, width, height)
    old_boxes, old_scores = ref.person_pixels(dets, min_score, width, height)
    for a, b in ((boxes, old_boxes), (scores, old_scores)):
        assert (a.dtype, a.shape, a.tobytes()) == (b.dtype, b.shape, b.tobytes())


def _walkers(seq: int) -> np.ndarray:
    """Five people walking across a 768 x 576 view (2 cm a pixel on the ground), through both count lines and
    all three zones, one of them stopping a while, one leaving and another coming in."""
    t = seq / 7.0
    out = []
    for k, (x0, y0, vx, vy) in enumerate(((0.05, 0.5, 0.06, 0.0), (0.9, 0.2, -0.05, 0.03), (0.4, 0.05, 0.0, 0.07),
                                          (0.2, 0.8, 0.04, -0.05), (0.7, 0.7, -0.03, -0.02))):
        if k == 3 and 8.0 < t < 20.0:
            t_k = 8.0  # stands
        elif k == 3 and t >= 20.0:
            t_k = t - 12.0
        else:
            t_k = t
        x, y = x0 + vx * t_k, y0 + vy * t_k
        if 0.0 <= x <= 0.95 and 0.0 <= y <= 0.85:
            out.append((x, y, x + 0.05, y + 0.15))
    return np.array(out, dtype=np.float64).reshape(-1, 4)


def _run(seconds: float) -> list[tuple]:
    clock = FakeClock()
    fps = 7.0
    cam = SceneCamera(clock, _walkers, lores_size=(300, 200), fps=fps, frames=int(seconds * fps))
    geo = Geometry(GeometryConfig(homography=((0.02, 0, -7.68), (0, 0.02, -5.76), (0, 0, 1)), zones=(
        ZoneConfig("west", ((-8.0, -6.0), (0.0, -6.0), (0.0, 6.0), (-8.0, 6.0))),
        ZoneConfig("east", ((0.0, -6.0), (8.0, -6.0), (8.0, 6.0), (0.0, 6.0)))),
        lines=(LineConfig("ns", (0.0, -6.0), (0.0, 6.0)), LineConfig("ew", (-8.0, 0.5), (8.0, 0.5)))))
    quant = Quantizer(QuantizeConfig(), geo, Pseudonymizer(3600, lambda n: bytes(range(n))))
    ticks: list = []
    gate = Gate(DetectorConfig(tiles=(3, 2), overlap=0.3, gating="motion", max_invokes=4, sweep_s=10.0),
                tile_grid(3, 2, 0.3))
    loop = SensorLoop(LoopConfig(detect_hz=fps, emit_hz=2.0), cam, SceneDetector(_walkers), Tracker(TrackerConfig()),
                      quant, clock, sinks=[ticks.append], gate=gate)
    loop.run()
    assert loop.stats.frames == int(seconds * fps)
    out = []
    for t in ticks:
        g = t.ground
        out.append((t.wall, t.crossings, t.records, g.track_ids.tobytes(), g.xy.tobytes(), g.velocity.tobytes(),
                    g.height_m.tobytes()))
    return out


def _old_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LineCounter, "update", ref.line_update)  # (with the old step and confirmation)
    monkeypatch.setattr(Geometry, "zone_of", ref.zone_of)
    monkeypatch.setattr(Quantizer, "quantize", ref.quantize)
    monkeypatch.setattr(Detections, "person_pixels", ref.person_pixels)


def test_a_gated_run_ticks_as_with_the_old_code(monkeypatch):
    new = _run(40.0)
    with monkeypatch.context() as m:
        _old_code(m)
        old = _run(40.0)
    assert sum(len(t[1]) for t in new) >= 4  # the run counts crossings ...
    assert sum(len(t[2]) for t in new) >= 20  # ... and releases records
    assert len(new) == len(old)
    for k, (a, b) in enumerate(zip(new, old, strict=True)):
        assert a == b, f"tick {k}"

"""Counting line crossings with hysteresis (firmware.sensing.geometry.LineCounter): a track jittering inside
the band never counts, a crossing counts once, a crossing made while the track was unseen counts when it is
seen again; the loop counts with it and rebuilds it on `reset_counting()`."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.config.sensing import GeometryConfig, LineConfig, LoopConfig, QuantizeConfig
from firmware.installer.countaudit import path_crossings
from firmware.sensing.geometry import Geometry, LineCounter
from firmware.sensing.loop import SensorLoop
from firmware.sensing.pseudonym import Pseudonymizer
from firmware.sensing.quantize import Quantizer
from firmware.sensing.tracker import Track
from hal.clock import FakeClock
from hal.synthetic import SyntheticCamera, SyntheticCrowd

BAND = 0.5
# upright line x = 0 from y = -100 to 100: its left (seen from a to b) is x < 0, so right -> left is "+"
LINE = LineConfig("door", (0.0, -100.0), (0.0, 100.0))

inside = st.floats(-BAND, BAND)  # on the line or within the band either side
right = st.floats(BAND + 1e-6, 5.0)
left = st.floats(-5.0, -BAND - 1e-6)
y = st.floats(-50.0, 50.0)


def _count(xs: list[float | None], ys: list[float] | None = None, band: float = BAND) -> list[tuple[int, str]]:
    """Feed one track's x per tick (None: unseen that tick) and say on which ticks it counted, which way."""
    counter = LineCounter([LINE], band)
    out = []
    for k, x in enumerate(xs):
        if x is None:
            got = counter.update(np.zeros(0, np.int64), np.zeros((0, 2)), k * 0.1)
        else:
            yk = ys[k] if ys else 0.0
            got = counter.update(np.array([7]), np.array([[x, yk]]), k * 0.1)
        out += [(k, c.direction) for c in got]
        assert all(c.track_id == 7 and c.line == "door" for c in got)
    return out


def _maybe_unseen(xs: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(xs, st.none())


@given(st.lists(_maybe_unseen(inside), min_size=1, max_size=60))
def test_a_track_jittering_inside_the_band_never_counts(xs):
    assert _count(xs) == []


@given(right, st.lists(_maybe_unseen(inside), max_size=40), right)
def test_a_track_that_wanders_into_the_band_and_back_does_not_count(start, jitter, end):
    assert _count([start, *jitter, end]) == []


@given(right, st.lists(_maybe_unseen(inside), max_size=30), st.lists(_maybe_unseen(left), min_size=1, max_size=30),
       st.lists(_maybe_unseen(inside), max_size=10))
def test_a_crossing_counts_once_however_the_track_jitters(start, before, after, hover):
    xs = [start, *before, *after, *hover]
    first_left = 1 + len(before) + next((i for i, x in enumerate(after) if x is not None), len(after))
    expected = [(first_left, "+")] if first_left < 1 + len(before) + len(after) else []
    assert _count(xs) == expected


@given(left, st.integers(1, 50), right)
def test_a_crossing_made_while_unseen_counts_when_the_track_is_seen_again(start, gap, end):
    xs = [start, *([None] * gap), end]
    assert _count(xs) == [(gap + 1, "-")]


@given(st.lists(_maybe_unseen(st.floats(-3, 3)), min_size=2, max_size=60), st.lists(y, min_size=60, max_size=60))
def test_the_device_counts_by_the_rule_the_cloud_counts_records_by(xs, ys):
    """The same crossings, tick by tick, as firmware.installer.countaudit (the cloud's and the bench's rule)."""
    line = LineConfig("short", (0.0, -20.0), (0.0, 20.0))  # a finite line: crossings beyond its ends do not count
    counter = LineCounter([line], BAND)
    device = []
    for k, x in enumerate(xs):
        if x is not None:
            device += [(k, c.direction) for c in counter.update(np.array([1]), np.array([[x, ys[k]]]), float(k))]
    seen = [k for k, x in enumerate(xs) if x is not None]
    path = np.array([[xs[k], ys[k]] for k in seen]).reshape(-1, 2)
    cloud = path_crossings(np.array(seen, dtype=np.float64), path, [line], BAND)
    assert device == [(int(c.t), c.direction) for c in cloud]


def test_a_track_crossing_beyond_the_line_ends_is_not_counted_but_keeps_its_side():
    line = LineConfig("gate", (0.0, 0.0), (0.0, 2.0))
    counter = LineCounter([line], BAND)
    step = [counter.update(np.array([3]), np.array([p]), float(k)) for k, p in
            enumerate([(2.0, 5.0), (-2.0, 5.0), (2.0, 1.0)])]  # around the line's end, then back through it
    assert step[0] == [] and step[1] == []
    assert [(c.line, c.direction) for c in step[2]] == [("gate", "-")]


def test_tracks_are_counted_apart_and_forgotten_once_long_unseen():
    counter = LineCounter([LINE], BAND, forget_s=30.0)
    assert counter.update(np.array([1, 2]), np.array([[1.0, 0.0], [-1.0, 0.0]]), 0.0) == []
    got = counter.update(np.array([1, 2]), np.array([[-1.0, 0.0], [1.0, 0.0]]), 1.0)
    assert sorted((c.track_id, c.direction) for c in got) == [(1, "+"), (2, "-")]
    assert len(counter) == 2
    counter.update(np.array([5]), np.array([[1.0, 0.0]]), 40.0)  # 1 and 2 unseen for 39 s: ended
    assert len(counter) == 1
    assert counter.update(np.array([1]), np.array([[1.0, 0.0]]), 41.0) == []  # a new start, nothing to cross


def test_several_lines_count_each_crossing_of_each():
    lines = [LINE, LineConfig("floor", (-100.0, 0.0), (100.0, 0.0))]  # y = 0, left of a -> b is y > 0
    counter = LineCounter(lines, BAND)
    counter.update(np.array([4]), np.array([[1.0, -1.0]]), 0.0)
    got = counter.update(np.array([4]), np.array([[-1.0, 1.0]]), 0.1)
    assert sorted((c.line, c.direction) for c in got) == [("door", "+"), ("floor", "+")]


@pytest.mark.parametrize("band", [-0.1, float("nan"), 11.0])
def test_a_bad_band_is_refused_naming_the_key(band):
    with pytest.raises(ValueError, match="count_band_m"):
        GeometryConfig(lines=(LINE,), count_band_m=band).validate()


# -- in the loop ------------------------------------------------------------------------------------------


class ScriptedTracks:
    """A tracker that reports one person (track 7) at ground x = script[k] on tick k (pixels are metres
    through the identity homography); None: the person is not seen that tick (not reported)."""

    def __init__(self, script: list[float | None]) -> None:
        self.script = script
        self.k = 0

    def update(self, boxes, scores, dt, frame_size=None) -> list[Track]:
        x = self.script[self.k] if self.k < len(self.script) else None
        self.k += 1
        if x is None:
            return []
        return [Track(7, (x + 100.0 - 0.2, 49.0, x + 100.0 + 0.2, 50.0), 0.9, (0.0, 0.0), 1.0, 5)]


def _loop(script: list[float | None], lines: tuple[LineConfig, ...]) -> tuple[SensorLoop, list]:
    clock = FakeClock()
    geo = Geometry(GeometryConfig(lines=lines))  # identity homography: foot point (x + 100, 50) in metres
    quant = Quantizer(QuantizeConfig(), geo, Pseudonymizer(3600, lambda n: bytes(range(n))))
    got: list = []
    loop = SensorLoop(LoopConfig(detect_hz=10.0), SyntheticCamera(clock, frames=len(script)), SyntheticCrowd(0),
                      ScriptedTracks(script), quant, clock, sinks=[lambda r: got.extend(r.crossings)])  # type: ignore[arg-type]
    return loop, got


LOOP_LINE = LineConfig("door", (100.0, -100.0), (100.0, 200.0))  # x = 100 m: the script's x = 0


def test_the_loop_counts_a_person_jittering_on_the_line_not_at_all():
    """Failed before LineCounter: the loop counted every change of side of a track hovering on the line."""
    loop, got = _loop([1.0, 0.1, -0.1, 0.2, -0.2, 0.1, -0.1, 0.3, 1.0], (LOOP_LINE,))
    loop.run()
    assert got == []


def test_the_loop_counts_a_crossing_the_detector_missed_when_the_person_is_seen_again():
    """Failed before LineCounter: a track unseen on a tick lost its last position, so its crossing was lost."""
    loop, got = _loop([2.0, 1.5, None, None, None, -1.5, -2.0, *[-2.0] * 6], (LOOP_LINE,))  # held 0.5 s after
    loop.run()
    assert [(c.track_id, c.line, c.direction) for c in got] == [(7, "door", "+")]


def test_reset_counting_rebuilds_the_counter_with_the_lines_as_they_are_now():
    # each side held the 0.5 s count_hold_s, with time to spare for a [geometry] count_smooth_s of 0.3 s
    loop, got = _loop([2.0, 2.0, 2.0, *[-2.0] * 10, *[2.0] * 10], ())
    loop.run(max_ticks=2)
    assert loop._counter is not None and loop._counter.names == []
    loop.quantizer.geometry = Geometry(GeometryConfig(lines=(LOOP_LINE,)))  # a zone editor drew a line
    loop.reset_counting()
    loop.run()
    assert [c.direction for c in got] == ["+", "-"]


# -- the hold: a new side must be held `hold_s` before the crossing counts ---------------------------------

HOLD = 0.5
TICK = 0.125  # exact in binary: HOLD is 4 ticks


def _count_held(xs: list[float | None], hold: float = HOLD) -> list[tuple[int, str]]:
    """As _count, ticks TICK apart, then quiet ticks until every due crossing has had its hold."""
    counter = LineCounter([LINE], BAND, hold_s=hold)
    out = []
    quiet = int(hold / TICK) + 1
    for k, x in enumerate([*xs, *([None] * quiet)]):
        seen = x is not None
        pos = np.array([[x, 0.0]] if seen else []).reshape(-1, 2)
        got = counter.update(np.array([7] if seen else [], np.int64), pos, k * TICK)
        out += [(k, c.direction) for c in got]
    return out


few = st.integers(1, int(HOLD / TICK) - 1)  # fewer ticks than the hold: a swing back within it
many = st.integers(int(HOLD / TICK), 30)


@given(st.lists(right, min_size=1, max_size=5), left, st.lists(_maybe_unseen(left), max_size=1),
       st.lists(_maybe_unseen(inside), max_size=1), right, st.lists(_maybe_unseen(right), max_size=5))
def test_a_swing_across_and_back_within_the_hold_counts_nothing(start, across, more, hover, back, after):
    xs = [*start, across, *more, *hover, back, *after]  # back on the old side at most 3 ticks after crossing
    assert _count_held(xs) == []
    assert [d for _, d in _count_held(xs, hold=0.0)] == ["+", "-"]  # the rule without a hold counted both


@given(right, st.lists(_maybe_unseen(inside), max_size=10), many, st.lists(_maybe_unseen(inside), max_size=10))
def test_a_real_crossing_counts_exactly_once_once_held(start, before, held, hover):
    xs = [start, *before, *([-2.0] * held), *hover]
    first_left = 1 + len(before)
    assert _count_held(xs) == [(first_left + int(HOLD / TICK), "+")]


@given(left, st.integers(1, 50), st.lists(_maybe_unseen(st.floats(BAND + 1e-6, 5.0)), max_size=10))
def test_a_crossing_made_while_unseen_still_counts_when_seen_again_and_held(start, gap, after):
    xs = [start, *([None] * gap), 2.0, *after]  # seen again on the other side, then unseen or there
    assert _count_held(xs) == [(gap + 1 + int(HOLD / TICK), "-")]


@given(st.lists(_maybe_unseen(st.floats(-3, 3)), min_size=2, max_size=60), st.lists(y, min_size=60, max_size=60),
       st.sampled_from([0.0, 0.25, HOLD, 1.0]))
def test_the_held_rule_is_the_one_countaudit_can_recount_a_path_by(xs, ys, hold):
    """firmware.installer.countaudit.path_crossings with the same hold counts the same crossings, in order,
    each at its first point on the new side (the device counts it `hold` later)."""
    line = LineConfig("short", (0.0, -20.0), (0.0, 20.0))
    counter = LineCounter([line], BAND, hold_s=hold)
    device = []
    first_seen: dict[int, float] = {}
    steps = [*xs, *([None] * (int(hold / TICK) + 1))]
    for k, x in enumerate(steps):
        seen = x is not None
        pos = np.array([[x, ys[k]]] if seen else []).reshape(-1, 2)
        device += [(k * TICK, c.direction) for c in counter.update(np.array([1] if seen else [], np.int64), pos,
                                                                   k * TICK)]
        if seen:
            first_seen[k] = k * TICK
    seen_k = [k for k, x in enumerate(xs) if x is not None]
    path = np.array([[xs[k], ys[k]] for k in seen_k]).reshape(-1, 2)
    cloud = path_crossings(np.array(seen_k, dtype=np.float64) * TICK, path, [line], BAND, hold)
    assert [d for _, d in device] == [c.direction for c in cloud]
    for (t_dev, _), c in zip(device, cloud, strict=True):  # counted the first tick the hold had run out
        assert c.t + hold <= t_dev < c.t + hold + TICK or (hold == 0 and t_dev == c.t)


def test_the_loop_counts_a_box_that_jumps_across_the_line_and_back_not_at_all():
    """A PETS09-like swing: more than a metre across for 3 ticks at 10 Hz (0.3 s), then back. Counted + and -
    before count_hold_s (the same script with the hold 0 counts both, below)."""
    script = [2.0, 2.0, -1.5, -1.5, -1.5, 2.0, *[2.0] * 8]
    loop, got = _loop(script, (LOOP_LINE,))
    loop.run()
    assert got == []
    clock = FakeClock()
    geo = Geometry(GeometryConfig(lines=(LOOP_LINE,), count_hold_s=0.0, count_smooth_s=0.0, count_join_s=0.0,
                                  count_hold_restart=False))  # the rule before the hold
    quant = Quantizer(QuantizeConfig(), geo, Pseudonymizer(3600, lambda n: bytes(range(n))))
    old: list = []
    SensorLoop(LoopConfig(detect_hz=10.0), SyntheticCamera(clock, frames=len(script)), SyntheticCrowd(0),
               ScriptedTracks(script), quant, clock, sinks=[lambda r: old.extend(r.crossings)]).run()  # type: ignore[arg-type]
    assert [c.direction for c in old] == ["+", "-"]


@pytest.mark.parametrize("hold", [-0.1, float("nan"), 10.5])
def test_a_bad_hold_is_refused_naming_the_key(hold):
    with pytest.raises(ValueError, match="count_hold_s"):
        GeometryConfig(lines=(LINE,), count_hold_s=hold).validate()


walk = st.lists(st.lists(st.tuples(st.integers(0, 5), st.floats(-3.0, 3.0), st.floats(-120.0, 120.0)),
                         max_size=6), min_size=1, max_size=40)


@given(walk, st.sampled_from([0.0, 0.5]))
def test_the_quiet_fast_path_counts_and_keeps_sides_as_the_full_step(frames, hold):
    """`_quiet` (plain Python for a track that crosses nothing) against `_step` alone, frame by frame."""
    lines = [LINE, LineConfig("hall", (-10.0, 20.0), (10.0, 20.0))]
    fast, full = LineCounter(lines, BAND, hold_s=hold), LineCounter(lines, BAND, hold_s=hold)
    full._quiet = lambda tid, now, inside: False  # type: ignore[method-assign]
    for k, seen in enumerate(frames):
        ids = np.array(sorted({tid for tid, _, _ in seen}), dtype=np.int64)
        xy = np.array([[x, yy] for tid in ids for _, x, yy in [next(p for p in seen if p[0] == tid)]]).reshape(-1, 2)
        assert fast.update(ids, xy, k * 0.2) == full.update(ids, xy, k * 0.2)
        assert fast._side.keys() == full._side.keys()
        assert all(np.array_equal(fast._side[t], full._side[t]) for t in fast._side)

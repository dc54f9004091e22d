"""The fixed-rate loop: cadence without drift, overruns counted and skipped, emit rate, faults, and frames
released (zeroed) in the tick that took them."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.config.sensing import GeometryConfig, LoopConfig, QuantizeConfig, TrackerConfig
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import EndsRun, RecordSink, RunEnd, SensorLoop, TickResult
from firmware.sensing.pseudonym import Pseudonymizer
from firmware.sensing.quantize import Quantizer
from firmware.sensing.tracker import Tracker
from hal.clock import FakeClock
from hal.synthetic import SyntheticCamera, SyntheticCrowd

PERIOD_NS = 100_000_000  # 10 Hz


def make_loop(clock, camera, detector, sinks=(), hooks=(), **cfg):
    quant = Quantizer(QuantizeConfig(), Geometry(GeometryConfig(homography=(
        (0.02, 0, 0), (0, 0.02, 0), (0, 0, 1)))), Pseudonymizer(3600, lambda n: bytes(range(n))))
    return SensorLoop(LoopConfig(**cfg), camera, detector, Tracker(TrackerConfig()), quant, clock,
                      sinks=sinks, frame_hooks=hooks)


def test_ticks_follow_the_schedule_and_overruns_are_counted_and_skipped():
    clock = FakeClock()
    t0 = clock.monotonic_ns()
    cam = SyntheticCamera(clock, frames=40)
    det = SyntheticCrowd(5, clock=clock, cost_s={10: 0.25})  # frame 10 takes 2.5 periods
    starts = []
    loop = make_loop(clock, cam, det, hooks=[lambda f, d, w: starts.append(f.t_mono_ns)], detect_hz=10.0)
    stats = loop.run()
    assert stats.frames == 40
    offsets = [(s - t0) for s in starts]
    assert all(o % PERIOD_NS == 0 for o in offsets), "every tick starts on the grid: no drift"
    # frame 10 ran over: deadlines 11 and 12 were missed, counted, and not queued
    assert stats.overruns == 2
    assert offsets[9] == 9 * PERIOD_NS and offsets[10] == 12 * PERIOD_NS
    assert offsets[-1] == (40 + 2 - 1) * PERIOD_NS


def test_tracks_are_quantized_at_the_emit_rate_and_released_once_per_pseudonym_per_ended_bucket():
    clock = FakeClock(start_wall=1_700_000_000.0)
    cam = SyntheticCamera(clock, frames=100)
    got: list = []

    class Keep(EndsRun):
        def __call__(self, r: TickResult) -> None:
            got.append(r)

        def end_run(self, end: RunEnd) -> None:
            got.append(end)

    loop = make_loop(clock, cam, SyntheticCrowd(8), sinks=[Keep()], detect_hz=10.0, emit_hz=2.0)
    quantized = []
    inner = loop.quantizer.quantize
    loop.quantizer.quantize = lambda g, w: quantized.append(w) or inner(g, w)  # type: ignore[method-assign]
    loop.run()
    assert 19 <= len(quantized) <= 21  # 10 s at 2 Hz
    # the stop flushes the last bucket, once, after every tick
    assert isinstance(got[-1], RunEnd) and all(isinstance(r, TickResult) for r in got[:-1])
    assert got[-1].records
    per: dict[tuple[str, int], int] = {}
    for r in got:
        for rec in r.records:
            assert rec.t % 5 == 0 and (isinstance(r, RunEnd) or r.wall >= rec.t + 5)  # once its bucket ended
            per[(rec.pseudonym, rec.t)] = per.get((rec.pseudonym, rec.t), 0) + 1
        assert [x.pseudonym for x in r.records] == sorted(x.pseudonym for x in r.records)
    assert per and max(per.values()) == 1
    assert sum(len(r.records) for r in got) == loop.stats.records


def test_a_sink_that_does_nothing_special_never_sees_the_end_of_the_run_as_a_tick():
    # an occupancy-like sink, a plain function: the people it saw on the last tick are still there after the
    # stop (the end of the run is no tick where nobody was seen), and it is called once per tick, never more
    clock = FakeClock(start_wall=1_700_000_000.0)
    seen: list[int] = []
    records: list = []
    loop = make_loop(clock, SyntheticCamera(clock, frames=100), SyntheticCrowd(8),
                     sinks=[lambda r: seen.append(len(r.ground.track_ids)), RecordSink(records.extend)],
                     detect_hz=10.0, emit_hz=2.0)
    for _ in range(60):
        assert loop.tick()
    before = list(seen)
    assert len(before) == 60 and before[-1] > 0
    loop.flush()
    assert seen == before  # not told: no tick with nobody in it
    assert len(records) == loop.stats.records  # while a sink that keeps records has the last bucket's too


def test_every_buffer_is_zero_after_every_tick_even_when_the_detector_fails():
    clock = FakeClock()
    cam = SyntheticCamera(clock, frames=30, pool_size=2)
    det = SyntheticCrowd(5, fail_on=frozenset({3, 4, 17}))
    seen = []
    checks = []

    def hook(frame, dets, wall):
        seen.append(frame.buffers())
        assert any(b.any() for b in frame.buffers())  # live while in the tick

    def check() -> None:
        checks.append(all(not b.any() for bufs in seen for b in bufs) and cam.pool.free == cam.pool.size)

    class Sink(EndsRun):
        def __call__(self, result: TickResult) -> None:
            check()

        def end_run(self, end: RunEnd) -> None:
            check()

    loop = make_loop(clock, cam, det, sinks=[Sink()], hooks=[hook])
    stats = loop.run()
    assert stats.detector_errors == 3
    assert stats.frames == 30
    assert len(checks) == 30 + 1 and all(checks)  # and at the end of the run


def test_a_stalled_camera_is_reopened_with_backoff_while_the_loop_keeps_cadence():
    clock = FakeClock()
    cam = SyntheticCamera(clock, frames=50, stall_frames=frozenset({5, 6, 7}), stall_timeout_s=0.2)
    ticks = []
    loop = make_loop(clock, cam, SyntheticCrowd(3), sinks=[lambda r: ticks.append(clock.monotonic_ns())],
                     detect_hz=10.0, reopen_backoff_s=(0.5, 4.0))
    stats = loop.run(max_ticks=400)  # the camera ends after its 50 frames
    assert stats.camera_stalls == 3
    assert stats.camera_reopens >= 1
    assert cam.opens == 4  # the first open and one reopen after each stall
    assert stats.frames == 50  # every frame the camera had was eventually taken
    # the loop kept ticking through the outage: no gap longer than a stall timeout plus one period
    gaps = np.diff(ticks)
    assert gaps.max() <= 0.2e9 + PERIOD_NS
    assert stats.ticks > stats.frames  # ticks without a frame while the camera was away


def test_bad_loop_config_is_refused():
    with pytest.raises(ValueError, match="emit_hz"):
        LoopConfig(detect_hz=1.0, emit_hz=2.0).validate()


def test_a_coasting_track_is_neither_released_nor_counted_and_keeps_its_id():
    """The tracker reports a track the detector missed for a moment at its prediction (`coast_s`); the device
    releases only where people were seen: on the missed ticks nothing is emitted, after them the same
    pseudonyms go on."""
    from hal.detections import Detections

    class Blinking:  # the synthetic walkers, missed altogether on some frames, as a real detector does
        backend = "synthetic"

        def __init__(self, miss: set[int]) -> None:
            self.inner, self.miss = SyntheticCrowd(3, seed=4), miss

        def detect(self, frame):
            dets = self.inner.detect(frame)
            return Detections.empty() if frame.seq in self.miss else dets

        def close(self) -> None:
            pass

    class Spy(Tracker):  # what the tracker itself reports, tick by tick, and the frame size it is told
        def update(self, boxes, scores, dt, frame_size=None):
            out = super().update(boxes, scores, dt, frame_size)
            reported.append(out)
            sizes.add(frame_size)
            return out

    clock = FakeClock(start_wall=1_700_000_000.0)
    reported: list = []
    sizes: set = set()
    got: list = []
    camera = SyntheticCamera(clock, frames=30)
    loop = make_loop(clock, camera, Blinking({15, 16, 17}), sinks=[got.append],
                     detect_hz=10.0, emit_hz=10.0)
    loop.tracker = Spy(TrackerConfig(coast_s=1.0))
    quantized: list = []  # each tick's records before the bucket merges them (emit_hz = detect_hz)
    inner = loop.quantizer.quantize
    loop.quantizer.quantize = lambda g, w: quantized.append(inner(g, w)) or quantized[-1]  # type: ignore
    loop.run()
    missed = range(14, 17)  # ticks (0-based) of frames 15-17
    assert all(reported[i] and all(t.unseen_s > 0 for t in reported[i]) for i in missed)  # coasted...
    assert all(not quantized[i] and not len(got[i].ground.track_ids) for i in missed)  # ...not released
    before = {r.pseudonym for r in quantized[13]}
    after = {r.pseudonym for r in quantized[17]}
    assert before and before == after
    assert sizes == {camera.source_size}  # the boxes' frame, so a guess that has left it is not reported

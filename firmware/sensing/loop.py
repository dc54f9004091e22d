"""The fixed-rate sensor loop: capture, detect, release (zeroed) and track in one tick; quantize at the emit
rate, and release a time bucket's records once the bucket has ended, one per pseudonym (quantize.Buckets), the
last bucket when the loop stops; each carries the count-line crossings the loop's line counter confirmed for its
track in that bucket. Ticks are scheduled on the monotonic clock at start + k * period, so the loop
never drifts; a tick that overruns counts the deadlines it missed and skips them (frames are dropped, never
queued). A stalled or failed camera is reported and reopened with backoff while the loop keeps its cadence;
a permanent fault at start (`CameraUnavailable` before the camera gave a frame: no driver, no such camera, a
refused configuration) ends `run()` with that error, since no reopening can help. A camera lost mid-run (it gave
frames, then opening it finds none: a loose ribbon cable, a power dip) is hardware that may come back: a
counted fault (`camera_lost`, `camera_fault`, shown in the status records), reopened with the same capped
exponential backoff while the loop keeps ticking, and carried on from when it returns; only if it stays gone
past `camera_lost_limit_s` (CAMERA_LOST_LIMIT_S, 10 minutes, counted from its last frame) does `run()` end,
with `CameraLost`."""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast, runtime_checkable

import numpy as np

from firmware.config.sensing import LoopConfig
from firmware.sensing.gating import Gate
from firmware.sensing.geometry import Crossing, LineCounter
from firmware.sensing.quantize import Buckets, GroundState, Quantizer
from firmware.sensing.records import QuantizedTrack
from hal.camera import Camera
from hal.clock import Clock
from hal.detections import Detections
from hal.detector import Detector, RegionDetector
from hal.errors import CameraError, CameraStalled, CameraUnavailable, DetectorError, EndOfStream
from hal.frame import Frame

log = logging.getLogger(__name__)


class TrackerLike(Protocol):
    def update(self, boxes: np.ndarray, scores: np.ndarray, dt: float,
               frame_size: tuple[int, int] | None = None) -> Sequence: ...


_END = object()  # the camera has no more frames (a video file ended)
CAMERA_LOST_LIMIT_S = 600.0  # a camera gone mid-run for longer than this ends the run (CameraLost)


class CameraLost(CameraUnavailable):
    """The camera vanished mid-run and stayed gone past the loop's limit."""


_NO_BOXES, _NO_SCORES = np.zeros((0, 4)), np.zeros((0,))  # a tick without detections (two allocations fewer)
for _a in (_NO_BOXES, _NO_SCORES):
    _a.flags.writeable = False  # shared by every tick without detections


@dataclass(slots=True)
class LoopStats:
    ticks: int = 0
    frames: int = 0
    overruns: int = 0  # deadlines missed (each one is a frame not taken)
    detector_errors: int = 0
    camera_stalls: int = 0
    camera_reopens: int = 0
    camera_lost: int = 0  # times the camera vanished mid-run (opening it found none), whether it came back or not
    camera_fault: str = ""  # what is wrong with the camera now ("" while it delivers frames)
    records: int = 0  # track records released (one per pseudonym per ended time bucket)
    # profile only, one entry per frame: CPU of the loop's own work (not decode, not inference), wall time
    # in the detector, and wall time from the frame's capture to its zeroed release
    own_ns: list[int] = field(default_factory=list)
    detect_ns: list[int] = field(default_factory=list)
    hold_ns: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one tick produced, for sinks: the track records released (those of the time buckets that ended
    before this tick, one per pseudonym, sorted by pseudonym), count-line crossings and the ground state
    (on-device analytics). Never holds pixels. Always a tick: the loop stopping is a `RunEnd`, given to a
    sink's `end_run`, never to its `__call__`."""

    wall: float
    records: Sequence[QuantizedTrack]
    crossings: Sequence[Crossing]
    ground: GroundState


@dataclass(frozen=True, slots=True)
class RunEnd:
    """The loop stopping, not a tick: `records` are the last bucket's track records (released now); nothing
    was seen. Given only to sinks that take it (`EndsRun`)."""

    wall: float
    records: Sequence[QuantizedTrack]


@runtime_checkable
class EndsRun(Protocol):
    """A sink that is told the loop stopped: `end_run(end)` once, after the last tick. The default (a sink that
    does not have it, or derives from this without overriding it) is told nothing; so a sink that does nothing
    special sees only ticks. A sink that keeps track records (files, the outbox) takes the last bucket's here."""

    def end_run(self, end: RunEnd) -> None:
        return None


class RecordSink(EndsRun):
    """A sink of the released track records alone: `take(records)` with each tick's (when there are any) and,
    when the loop stops, the last bucket's (a file, the outbox)."""

    def __init__(self, take: Callable[[Sequence[QuantizedTrack]], object]) -> None:
        self.take = take

    def __call__(self, tick: TickResult) -> None:
        if tick.records:
            self.take(tick.records)

    def end_run(self, end: RunEnd) -> None:
        if end.records:
            self.take(end.records)


def end_run(sink: object, end: RunEnd) -> None:
    """Tells `sink` the loop stopped if it takes it (`EndsRun`); a plain callable is not called."""
    if isinstance(sink, EndsRun):
        sink.end_run(end)


FrameHook = Callable[[Frame, Detections | None, float], None]
# (frame, this tick's confirmed tracks in source pixels, wall): called inside the frame's scope, after the
# tracker, so a consumer sees the pixels with the tracks; it must copy nothing it does not zero itself
TrackHook = Callable[[Frame, Sequence, float], None]
TickSink = Callable[[TickResult], None]  # each tick; the end of the run only through `end_run` (EndsRun)


class SensorLoop:
    def __init__(
        self,
        config: LoopConfig,
        camera: Camera,
        detector: Detector,
        tracker: TrackerLike,
        quantizer: Quantizer,
        clock: Clock,
        sinks: Sequence[TickSink] = (),
        frame_hooks: Sequence[FrameHook] = (),
        profile: bool = False,
        track_hooks: Sequence[TrackHook] = (),
        gate: Gate | None = None,
        camera_lost_limit_s: float | None = None,
    ) -> None:
        if camera_lost_limit_s is None:
            camera_lost_limit_s = CAMERA_LOST_LIMIT_S
        if not (math.isfinite(camera_lost_limit_s) and camera_lost_limit_s > 0):
            raise ValueError(f"camera_lost_limit_s: {camera_lost_limit_s!r}; use a finite number of seconds above 0")
        self.config = config
        self.camera = camera
        self.detector = detector
        self.tracker = tracker
        self.quantizer = quantizer
        self.clock = clock
        self.sinks = list(sinks)
        self.frame_hooks = list(frame_hooks)
        self.track_hooks = list(track_hooks)  # with none, the tracker runs after the frame is released
        self.profile = profile
        self.gate = gate  # regions to detect in (firmware.sensing.gating); None: the detector's own tiling
        self.stats = LoopStats()
        self._period_ns = int(round(1e9 / config.detect_hz))
        self._emit_ns = int(round(1e9 / config.emit_hz))
        self._camera_open = False
        self._reopen_at_ns = 0
        self._backoff_s = config.reopen_backoff_s[0]
        self._lost_limit_ns = int(camera_lost_limit_s * 1e9)
        self._had_frame = False  # the camera gave a frame this run: from then on, a camera not found may come back
        self._failing_since_ns: int | None = None  # the first failure since the camera's last frame
        self._lost = False  # opening the camera found none since its last frame
        self._counter: LineCounter | None = None  # built from the geometry's lines on the next tick
        self._prev_tick_ns: int | None = None
        self._next_emit_ns: int | None = None
        self._buckets = Buckets(quantizer.config.time_bucket_s)  # records held until their bucket ends
        # the ground states of the ticks within the counter's lag (count_hold_s + count_smooth_s): where a track
        # whose crossing the counter confirms while it is unseen was last seen (the record that crossing goes with)
        self._recent: deque[tuple[float, GroundState]] = deque()
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def reset_counting(self) -> None:
        """Drop the line counter's state (each track's side of each line): it is rebuilt on the next tick from
        the quantizer's geometry as it is then, so count lines changed while running count from there on.
        Safe to call from another thread."""
        self._counter = None

    def run(self, max_ticks: int | None = None) -> LoopStats:
        """Tick until stopped, the camera ends, or `max_ticks` ticks have run. Raises `CameraUnavailable` when
        the camera has a permanent fault before its first frame, `CameraLost` when it vanished mid-run and
        stayed gone past the limit (the camera is closed first, the last bucket released)."""
        start = self.clock.monotonic_ns()
        k = 0
        try:
            while not self._stop and (max_ticks is None or self.stats.ticks < max_ticks):
                deadline = start + k * self._period_ns
                self.clock.sleep_until_ns(deadline)
                if not self.tick():
                    break
                now = self.clock.monotonic_ns()
                k += 1
                behind = (now - start) // self._period_ns + 1  # the first deadline still ahead
                if behind > k:
                    self.stats.overruns += int(behind - k)
                    k = int(behind)
        finally:
            try:
                self.flush()
            finally:
                self._close_camera()
        return self.stats

    def flush(self) -> None:
        """Release the records of the bucket still open and tell the sinks the loop stopped (`end_run` with a
        `RunEnd`, to the sinks that take it; never as a tick). `run` does it on the way out; a caller stepping
        `tick` itself calls it when done."""
        records = self._buckets.flush()
        self.stats.records += len(records)
        end = RunEnd(self.clock.wall(), records)
        for sink in self.sinks:
            end_run(sink, end)

    def tick(self) -> bool:
        """One tick. Returns False when the camera has no more frames."""
        now = self.clock.monotonic_ns()
        self.stats.ticks += 1
        frame = self._capture(now)
        if frame is _END:
            return False
        # the tracker steps by the frames' own capture times (a camera that skipped frames says so)
        seen_ns = frame.t_mono_ns if isinstance(frame, Frame) else now
        dt = 0.0 if self._prev_tick_ns is None else max(seen_ns - self._prev_tick_ns, 0) / 1e9
        self._prev_tick_ns = seen_ns
        own0 = time.thread_time_ns() if self.profile else 0
        detect_ns, tracks, size = 0, None, None
        boxes, scores = _NO_BOXES, _NO_SCORES
        if isinstance(frame, Frame):
            size = frame.source_size  # the frame's (width, height): the tracker keeps the last it was told
            held = time.perf_counter_ns()
            with frame:  # released, and so zeroed, on the way out whatever happens
                boxes, scores, tracks, detect_ns = self._in_frame(frame, dt, seen_ns)
            if self.profile:
                self.stats.hold_ns.append(time.perf_counter_ns() - held)
        if tracks is None:
            tracks = self._track(boxes, scores, dt, size, seen_ns)
        self._emit(now, tracks)
        if self.profile:
            self.stats.own_ns.append(time.thread_time_ns() - own0 - detect_ns)
        return True

    def _in_frame(self, frame: Frame, dt: float, seen_ns: int) -> tuple[np.ndarray, np.ndarray, Sequence | None, int]:
        """What the tick does while it holds the frame: gate, detect, frame hooks, and (when track hooks need
        the pixels) track. Returns (boxes, scores, tracks or None, detector CPU ns)."""
        self.stats.frames += 1
        # the gate's motion and regions are the loop's own work, not inference
        regions = self.gate.plan(frame.pixels, seen_ns / 1e9) if self.gate is not None else None
        d0, w0 = (time.thread_time_ns(), time.perf_counter_ns()) if self.profile else (0, 0)
        dets = self._detect(frame, regions)
        detect_ns = 0
        if self.profile:
            detect_ns = time.thread_time_ns() - d0
            self.stats.detect_ns.append(time.perf_counter_ns() - w0)
        for hook in self.frame_hooks:
            hook(frame, dets, self.clock.wall())
        boxes, scores = _NO_BOXES, _NO_SCORES
        if dets is not None:
            boxes, scores = dets.person_pixels(self.config.min_score, *frame.source_size)
        tracks = None
        if self.track_hooks:  # they need this tick's tracks with the pixels: track before release
            tracks = self._track(boxes, scores, dt, frame.source_size, seen_ns)
            wall = self.clock.wall()
            for track_hook in self.track_hooks:
                track_hook(frame, tracks, wall)
        return boxes, scores, tracks, detect_ns

    def _track(self, boxes: np.ndarray, scores: np.ndarray, dt: float, size: tuple[int, int] | None,
               t_ns: int) -> Sequence:
        tracks = self.tracker.update(boxes, scores, dt, size)
        if self.gate is not None and size is not None:
            self.gate.observe(tracks, size, t_ns / 1e9)  # coasting tracks too: they get regions
        return _seen(tracks)

    def _capture(self, now: int) -> Frame | object | None:
        if not self._camera_open and not self._open_camera(now):
            return None
        try:
            frame = self.camera.capture()
        except EndOfStream:
            return _END
        except CameraError as e:
            if isinstance(e, CameraUnavailable) and not self._had_frame:
                raise
            self.stats.camera_stalls += 1
            self._close_camera()
            if isinstance(e, CameraUnavailable):
                self._camera_gone(self.clock.monotonic_ns(), e)
            else:
                kind = "stalled" if isinstance(e, CameraStalled) else "failed"
                self._schedule_reopen(self.clock.monotonic_ns(), f"camera {kind}: {e}")
            return None
        self._had_frame = True
        if self._failing_since_ns is not None:
            away = (self.clock.monotonic_ns() - self._failing_since_ns) / 1e9
            log.warning("camera back after %.1f s without frames (%s)", away, self.stats.camera_fault)
        self._failing_since_ns, self._lost, self.stats.camera_fault = None, False, ""
        return frame

    def _open_camera(self, now: int) -> bool:
        """Open the camera if its reopen is due; False while it is not open."""
        if now < self._reopen_at_ns:
            return False
        try:
            self.camera.open()
        except CameraUnavailable as e:
            if not self._had_frame:  # permanent at start: reopening cannot help, the run stops with it
                raise
            self._camera_gone(now, e)  # mid-run: hardware that may come back
            return False
        except CameraError as e:
            self._schedule_reopen(now, f"camera open failed: {e}")
            return False
        self._camera_open = True
        if self.stats.camera_stalls or self.stats.camera_lost:
            self.stats.camera_reopens += 1
            log.info("camera reopened", extra={"stalls": self.stats.camera_stalls})
        return True

    def _camera_gone(self, now: int, e: CameraUnavailable) -> None:
        """The camera gave frames this run and now cannot be found: counted once per loss, reported, reopened
        with backoff; CameraLost once it has been without frames for longer than the limit."""
        if not self._lost:
            self._lost = True
            self.stats.camera_lost += 1
        since = self._failing_since_ns if self._failing_since_ns is not None else now
        away_s = (now - since) / 1e9
        if now - since > self._lost_limit_ns:
            raise CameraLost(f"camera lost mid-run and gone for {away_s:.0f} s, over the limit of "
                             f"{self._lost_limit_ns / 1e9:.0f} s: {e}") from e
        self._schedule_reopen(now, f"camera lost ({away_s:.0f} s without frames): {e}")

    def _schedule_reopen(self, now: int, why: str) -> None:
        if self._failing_since_ns is None:
            self._failing_since_ns = now
        self.stats.camera_fault = why[:200]
        log.warning("%s; reopening in %.1f s", why, self._backoff_s)
        self._reopen_at_ns = now + int(self._backoff_s * 1e9)
        self._backoff_s = min(self._backoff_s * 2, self.config.reopen_backoff_s[1])

    def _close_camera(self) -> None:
        if self.gate is not None:
            self.gate.reset()  # the motion background is zeroed with the camera's buffers
        if self._camera_open:
            self._camera_open = False
            try:
                self.camera.close()
            except CameraError as e:
                log.warning("camera close failed: %s", e)

    def _detect(self, frame: Frame, regions: np.ndarray | None = None) -> Detections | None:
        bad = frame_problem(frame.pixels)
        if bad is not None:  # a detector fed this would fail, or worse find no one, silently
            self.stats.detector_errors += 1
            log.warning("frame %d refused before the detector: %s", frame.seq, bad)
            return None
        try:
            if regions is None:
                dets = self.detector.detect(frame)
            else:
                dets = cast(RegionDetector, self.detector).detect(frame, regions)
        except DetectorError as e:
            self.stats.detector_errors += 1
            log.warning("detector failed on frame %d: %s", frame.seq, e)
            return None
        self._backoff_s = self.config.reopen_backoff_s[0]  # a good frame resets the camera backoff
        return dets

    def _emit(self, now: int, tracks: Sequence) -> None:
        if not self.sinks:
            return
        ground = self.quantizer.ground(tracks)
        crossings = self._crossings(ground, now)
        if self._next_emit_ns is None:
            self._next_emit_ns = now
        quantized: list[QuantizedTrack] = []
        wall = self.clock.wall()
        if now >= self._next_emit_ns:
            quantized = self.quantizer.quantize(ground, wall)
            missed = (now - self._next_emit_ns) // self._emit_ns + 1
            self._next_emit_ns += missed * self._emit_ns
        crossed = self._crossed(crossings, ground, wall) if crossings else []
        records = self._buckets.add(quantized, wall, crossed)  # nothing finer than the bucket leaves: its end, once
        self.stats.records += len(records)
        result = TickResult(wall, records, crossings, ground)
        for sink in self.sinks:
            sink(result)

    def _crossings(self, ground: GroundState, now: int) -> list[Crossing]:
        counter = self._counter
        if counter is None:
            geo = self.quantizer.geometry.config
            counter = self._counter = LineCounter(geo.lines, geo.count_band_m, hold_s=geo.count_hold_s,
                                                  join_s=geo.count_join_s, smooth_s=geo.count_smooth_s,
                                                  restart=geo.count_hold_restart)
        t_s = now / 1e9
        found = counter.update(ground.track_ids, ground.xy, t_s)
        lag = counter.hold_s + counter.smooth_s  # how long after its last sighting a crossing can be confirmed
        if lag > 0 and counter.names:
            # a crossing confirmed now was first seen on its new side after the last tick's time - lag:
            # keep the ground states from then on
            while self._recent and self._recent[0][0] < self._recent[-1][0] - lag:
                self._recent.popleft()
            self._recent.append((t_s, ground))
        return found

    def _crossed(self, crossings: Sequence[Crossing], ground: GroundState,
                 wall: float) -> list[tuple[QuantizedTrack, str, str]]:
        """Each confirmed crossing with its track's record at this tick (quantized at `wall`, so in this
        tick's bucket): where the track is seen now, or, for a crossing confirmed after the hold while its
        track is unseen, where it was last seen within the hold."""
        states = [g for _, g in reversed(self._recent)] or [ground]  # newest (this tick's) first
        want = {c.track_id for c in crossings}
        rec: dict[int, QuantizedTrack] = {}
        for g in states:
            if not want:
                break
            idx = [i for i, tid in enumerate(g.track_ids.tolist()) if tid in want]
            if not idx:
                continue
            sub = GroundState(g.track_ids[idx], g.xy[idx], g.velocity[idx], g.height_m[idx])
            for tid, r in zip(sub.track_ids.tolist(), self.quantizer.quantize(sub, wall), strict=True):
                rec[tid] = r
                want.discard(tid)
        if want:
            log.warning("no sighting of track(s) %s for their line crossing; it is counted, not in a record",
                        sorted(want))
        return [(rec[c.track_id], c.line, c.direction) for c in crossings if c.track_id in rec]


def frame_problem(pixels: np.ndarray) -> str | None:
    """Why a frame's model-input pixels break the detector contract (HxWx3 uint8 RGB), or None."""
    if not isinstance(pixels, np.ndarray):
        return f"pixels are a {type(pixels).__name__}, not an array"
    if pixels.dtype != np.uint8:
        return f"pixels are {pixels.dtype}, not uint8"
    if pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 1:
        return f"pixels have shape {pixels.shape}, not (height, width, 3)"
    return None


def _seen(tracks: Sequence) -> Sequence:
    """The tracks seen this tick: one the tracker coasts (reports at its prediction while the detector misses
    it) is neither released nor counted, nor shown to a hook; the device says where people were seen."""
    if all(t.unseen_s == 0.0 for t in tracks):
        return tracks
    return [t for t in tracks if t.unseen_s == 0.0]

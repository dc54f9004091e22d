"""VideoCamera with realtime = true behaves as a camera: frames that came due while the caller was busy are
skipped, and each frame carries its own capture time on the source's timeline (an injected clock, no sleeps)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from hal.clock import FakeClock
from hal.video import VideoCamera

FPS = 7.0
PERIOD_NS = int(round(1e9 / FPS))


def _images(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        img = np.full((48, 64, 3), 10 + i, np.uint8)  # frame i is told by its grey level
        cv2.imwrite(str(folder / f"{i:04d}.png"), img)
    return folder


def _video(path: Path, n: int) -> Path:
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48))
    for i in range(n):
        out.write(np.full((48, 64, 3), 10 + 8 * i, np.uint8))
    out.release()
    return path


def _camera(source: Path, clock: FakeClock) -> VideoCamera:
    return VideoCamera(source, clock=clock, lores_size=(32, 24), main_size=None, fps=FPS, realtime=True)


@pytest.fixture(params=["images", "video"])
def source(request, tmp_path: Path) -> Path:
    return _images(tmp_path / "frames", 20) if request.param == "images" else _video(tmp_path / "v.avi", 20)


def test_a_caller_at_half_the_rate_gets_every_other_frame_stamped_on_the_source_timeline(source: Path) -> None:
    clock = FakeClock()
    with _camera(source, clock) as cam:
        t0 = clock.monotonic_ns()
        seqs, stamps = [], []
        for k in range(8):
            clock.sleep_until_ns(t0 + k * 2 * PERIOD_NS + 1000)  # ticks at 3.5 Hz, a little late each time
            with cam.capture() as frame:
                seqs.append(frame.seq)
                stamps.append(frame.t_mono_ns - t0)
        assert seqs == [1, 3, 5, 7, 9, 11, 13, 15]
        assert stamps == [int(round(i * 1e9 / FPS)) for i in range(0, 16, 2)]  # due times, not tick times
        assert cam.skipped == 7


def test_a_busy_caller_skips_what_came_due_and_an_idle_one_waits(source: Path) -> None:
    clock = FakeClock()
    with _camera(source, clock) as cam:
        t0 = clock.monotonic_ns()
        with cam.capture() as frame:
            assert frame.seq == 1 and frame.t_mono_ns == t0
        clock.advance(0.6)  # inference took 0.6 s: frames 2 to 5 came due meanwhile (at 1/7 .. 4/7 s)
        with cam.capture() as frame:
            assert frame.seq == 5 and frame.t_mono_ns == t0 + int(round(4e9 / FPS))
        assert cam.skipped == 3
        before = clock.monotonic_ns()
        with cam.capture() as frame:  # asked at once: waits for frame 6, due at 5/7 s
            assert frame.seq == 6
            assert clock.monotonic_ns() == frame.t_mono_ns == t0 + int(round(5e9 / FPS)) > before
        assert cam.skipped == 3


def test_the_frame_delivered_after_a_skip_is_the_due_one(tmp_path: Path) -> None:
    clock = FakeClock()
    with _camera(_images(tmp_path / "frames", 12), clock) as cam:
        clock.advance(5.5 / FPS)  # frames 1..6 due; the newest is frame 6 (index 5)
        with cam.capture() as frame:
            level = int(cv2.resize(frame.pixels, (1, 1))[0, 0, 0])
            assert frame.seq == 6 and level == 10 + 5


def test_skipping_past_the_end_is_the_end_of_the_stream(tmp_path: Path) -> None:
    from hal.errors import EndOfStream

    clock = FakeClock()
    with _camera(_images(tmp_path / "frames", 5), clock) as cam:
        clock.advance(10.0)
        with pytest.raises(EndOfStream):
            cam.capture()


def test_without_realtime_every_frame_comes_one_a_capture_at_clock_time(tmp_path: Path) -> None:
    clock = FakeClock()
    cam = VideoCamera(_images(tmp_path / "frames", 6), clock=clock, lores_size=(32, 24), main_size=None, fps=FPS)
    with cam:
        clock.advance(3.0)
        with cam.capture() as frame:
            assert frame.seq == 1 and frame.t_mono_ns == clock.monotonic_ns()
        assert cam.skipped == 0


def test_the_loop_steps_the_tracker_by_capture_times_at_a_pi_rate(tmp_path: Path) -> None:
    """At detect_hz 3.5 on a 7 fps source the tracker is told 2/7 s between frames (people walk at their
    speed), and the loop sees every other source frame."""
    from firmware.config.sensing import LoopConfig, QuantizeConfig
    from firmware.sensing.loop import SensorLoop
    from hal.detections import Detections

    class Dets:
        backend = "test"
        seqs: list[int] = []

        def detect(self, frame, regions=None):
            self.seqs.append(frame.seq)
            return Detections.empty()

        def close(self) -> None:
            pass

    class Tracker:
        dts: list[float] = []

        def update(self, boxes, scores, dt, frame_size=None):
            self.dts.append(dt)
            return []

    clock = FakeClock()
    det, tracker = Dets(), Tracker()
    loop = SensorLoop(LoopConfig(detect_hz=3.5), _camera(_images(tmp_path / "frames", 20), clock), det, tracker,
                      quantizer=SimpleNamespace(config=QuantizeConfig()), clock=clock)  # type: ignore[arg-type]
    loop.run()
    assert det.seqs == list(range(1, 21, 2))
    assert tracker.dts[1:] == pytest.approx([2 / FPS] * 9, abs=1e-6)

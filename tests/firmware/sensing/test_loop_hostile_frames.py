"""Frames that are not what they say: grey (one channel), float, empty. Each is a counted detector error and
the loop goes on, on the real detector; none of them passes as "zero people"."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.config.sensing import GeometryConfig, LoopConfig, QuantizeConfig, TrackerConfig
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import SensorLoop, frame_problem
from firmware.sensing.pseudonym import Pseudonymizer
from firmware.sensing.quantize import Quantizer
from firmware.sensing.tracker import Tracker
from hal.clock import FakeClock
from hal.errors import EndOfStream
from hal.frame import Frame

BAD = {
    "grey": np.full((300, 300), 128, np.uint8),
    "float": np.full((300, 300, 3), 0.5, np.float32),
    "rgba": np.full((300, 300, 4), 128, np.uint8),
    "empty": np.zeros((0, 300, 3), np.uint8),
}


class ListCamera:
    """Hands out the given pixel arrays as frames, then ends."""

    def __init__(self, clock: FakeClock, pixels: list[np.ndarray]) -> None:
        self.clock, self.pixels, self.i = clock, pixels, 0

    def open(self) -> None: ...

    def close(self) -> None: ...

    def capture(self) -> Frame:
        if self.i >= len(self.pixels):
            raise EndOfStream("done")
        self.i += 1
        return Frame(self.pixels[self.i - 1], None, self.clock.monotonic_ns(), self.i, (768, 576))


def _loop(clock: FakeClock, cam: ListCamera, det) -> SensorLoop:
    quant = Quantizer(QuantizeConfig(), Geometry(GeometryConfig(homography=((0.02, 0, 0), (0, 0.02, 0), (0, 0, 1)))),
                      Pseudonymizer(3600, lambda n: bytes(range(n))))
    return SensorLoop(LoopConfig(detect_hz=10.0), cam, det, Tracker(TrackerConfig()), quant, clock)


@pytest.mark.parametrize("kind", sorted(BAD))
def test_frame_problem_names_the_fault(kind: str) -> None:
    assert frame_problem(BAD[kind]) is not None
    assert frame_problem(np.zeros((300, 300, 3), np.uint8)) is None


def test_bad_frames_are_counted_detector_errors_on_the_real_detector(shared_data) -> None:
    from hal.tflite import TfliteDetector

    clock = FakeClock()
    good = np.full((300, 300, 3), 100, np.uint8)
    frames = [good, *BAD.values(), good]
    loop = _loop(clock, ListCamera(clock, frames), TfliteDetector(tiles=(1, 1), edgetpu=False))
    stats = loop.run()
    assert stats.frames == len(frames)  # the loop went on to the last frame
    assert stats.detector_errors == len(BAD)

"""The detector contract. Implementations: `hal.tflite.TfliteDetector` (LiteRT / tflite-runtime, Edge TPU
delegate or CPU) and `hal.scripted.ScriptedDetector` (replays ground truth with calibrated errors)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from hal.detections import Detections
from hal.frame import Frame


@runtime_checkable
class Detector(Protocol):
    """Finds objects in a frame. `detect()` reads `frame.pixels` only (never keeps a reference to it) and
    returns boxes normalized to the frame. Raises `DetectorError` on failure (the frame is still the
    caller's to release). `backend` says what runs the model: "edgetpu", "cpu" or "scripted".
    Detectors that can run on parts of the frame take `regions` ((R, 4) [x0, y0, x1, y1] normalized) as a
    second argument and look only there; the loop passes it only when gating is on."""

    backend: str

    def detect(self, frame: Frame) -> Detections: ...

    def close(self) -> None: ...


@runtime_checkable
class RegionDetector(Protocol):
    """A detector that can look at parts of the frame only: `regions` (R, 4) [x0, y0, x1, y1] normalized, one
    invoke each (None: the whole frame, its own way)."""

    backend: str

    def detect(self, frame: Frame, regions: np.ndarray | None = None) -> Detections: ...

    def close(self) -> None: ...

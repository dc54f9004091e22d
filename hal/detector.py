"""The detector contract. Implementations: `hal.tflite.TfliteDetector` (LiteRT / tflite-runtime, Edge TPU
delegate or CPU) and `hal.scripted.ScriptedDetector` (replays ground truth with calibrated errors)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from hal.detections import Detections
from hal.frame import Frame


@runtime_checkable
class Detector(Protocol):
    """Finds objects in a frame. `detect()` reads `frame.pixels` only (never keeps a reference to it) and
    returns boxes normalized to the frame. Raises `DetectorError` on failure (the frame is still the
    caller's to release). `backend` says what runs the model: "edgetpu", "cpu" or "scripted"."""

    backend: str

    def detect(self, frame: Frame) -> Detections: ...

    def close(self) -> None: ...

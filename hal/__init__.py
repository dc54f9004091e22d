"""Hardware abstraction: camera, detector, clock, serial port and boot control, each a small Protocol with
its real implementation and a fake beside it. Native libraries (picamera2, LiteRT, the Edge TPU delegate)
are imported lazily inside the implementations, so this package imports on any laptop."""

from hal.clock import Clock, FakeClock, SystemClock
from hal.detections import PERSON, Detections
from hal.errors import (
    BootControlError,
    CameraError,
    CameraStalled,
    CameraUnavailable,
    DelegateError,
    DetectorError,
    EndOfStream,
    HalError,
    SerialError,
)
from hal.frame import Frame, FramePool

__all__ = [
    "PERSON", "BootControlError", "CameraError", "CameraStalled", "CameraUnavailable",
    "Clock", "DelegateError", "Detections",
    "DetectorError", "EndOfStream", "FakeClock", "Frame", "FramePool", "HalError", "SerialError", "SystemClock",
]

"""A camera that vanishes mid-run and comes back, as hardware does (a ribbon cable that works loose, a CSI
camera whose power dips, a USB camera pulled and plugged back), for tests and bench runs.

`CameraBus` stands in for libcamera's list of cameras behind `hal.picam.PiCamera(factory=bus.factory)`, so the
real driver code maps what the hardware does: while `unplug()`ed, the camera that was running delivers no more
requests (picamera2's wait times out: `CameraStalled`) and opening finds no camera (picamera2 raises IndexError:
`CameraUnavailable`, "no camera 0 found by libcamera"); after `plug()` it opens and delivers frames again.
`unplug_after(n)` pulls it by itself once `n` frames have been delivered (to pull it inside a running loop)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hal.fakepicam import FakePicamera2


class _BusCamera(FakePicamera2):
    def __init__(self, bus: CameraBus) -> None:
        super().__init__(bus.image)
        self.bus = bus

    def wait(self, job: int, timeout: float | None = None) -> Any:
        if not self.bus.plugged:
            raise TimeoutError("camera timed out")  # what picamera2 says when libcamera sends no request
        request = super().wait(job, timeout)
        self.bus.delivered += 1
        if self.bus.unplug_at is not None and self.bus.delivered >= self.bus.unplug_at:
            self.bus.unplug_at = None
            self.bus.unplug()
        return request


class CameraBus:
    def __init__(self, image_rgb: np.ndarray, cameras: int = 1) -> None:
        self.image, self.cameras = image_rgb, cameras
        self.plugged = True
        self.delivered = 0  # frames delivered by every camera opened on the bus
        self.opened = 0  # Picamera2 objects made (opens that found a camera)
        self.missing = 0  # opens that found none
        self.unplug_at: int | None = None

    def unplug(self) -> None:
        self.plugged = False

    def plug(self) -> None:
        self.plugged = True

    def unplug_after(self, frames: int) -> None:
        self.unplug_at = self.delivered + frames

    def factory(self, camera_num: int) -> FakePicamera2:
        """What `Picamera2(camera_num)` does: IndexError when libcamera lists no such camera."""
        if not self.plugged or not 0 <= camera_num < self.cameras:
            self.missing += 1
            raise IndexError("list index out of range")
        self.opened += 1
        return _BusCamera(self)

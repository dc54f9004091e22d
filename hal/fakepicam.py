"""A stand-in for picamera2's `Picamera2` with the hardware's habits, for testing `hal.picam.PiCamera` on a
laptop: the lores stream is YUV420 with rows padded to a 64-byte stride as libcamera delivers it, the main
stream is 4 bytes per pixel (XRGB-style padding), requests must be released, and the camera can stall
(no request within the timeout) or fail to start."""

from __future__ import annotations

from typing import Any

import numpy as np


class _Request:
    def __init__(self, cam: FakePicamera2, lores: np.ndarray, main: np.ndarray) -> None:
        self._cam, self._arrays = cam, {"lores": lores, "main": main}

    def make_array(self, name: str) -> np.ndarray:
        if self._cam.outstanding is not self:
            raise RuntimeError("request already released")
        return self._arrays[name].copy()

    def release(self) -> None:
        self._cam.outstanding = None
        self._cam.released += 1


class FakePicamera2:
    def __init__(self, image_rgb: np.ndarray, *, stall_on: frozenset[int] = frozenset(), fail_start: bool = False,
                 refuse_config: bool = False):
        self.image = image_rgb
        self.stall_on = stall_on
        self.fail_start = fail_start
        self.refuse_config = refuse_config  # a sensor that offers no mode for the configuration asked
        self.config: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        self.requests = 0
        self.released = 0
        self.outstanding: _Request | None = None

    def create_video_configuration(self, **kw: Any) -> dict[str, Any]:
        return kw

    def configure(self, config: dict[str, Any]) -> None:
        if self.refuse_config:
            raise RuntimeError("Configuration validation failed")
        if config["lores"]["format"] != "YUV420":
            raise RuntimeError("lores stream must be YUV")  # what the Pi 4's ISP says
        self.config = config

    def start(self) -> None:
        if self.fail_start or self.config is None:
            raise RuntimeError("Camera frontend has timed out!")
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True

    def capture_request(self, wait: bool = True) -> int:
        if not self.started:
            raise RuntimeError("camera not started")
        if self.outstanding is not None:
            raise RuntimeError("all buffers held: release requests")  # libcamera runs out of buffers
        self.requests += 1
        return self.requests

    def wait(self, job: int, timeout: float | None = None) -> _Request:
        if job in self.stall_on:
            raise TimeoutError("camera timed out")
        import cv2

        assert self.config is not None
        lw, lh = self.config["lores"]["size"]
        mw, mh = self.config["main"]["size"]
        lores_rgb = cv2.resize(self.image, (lw, lh), interpolation=cv2.INTER_AREA)
        i420 = cv2.cvtColor(lores_rgb, cv2.COLOR_RGB2YUV_I420)  # (lh*3/2, lw), planes packed
        stride = -(-lw // 64) * 64
        padded = np.zeros((lh * 3 // 2, stride), np.uint8)
        flat = padded.reshape(-1)
        flat[: lh * stride].reshape(lh, stride)[:, :lw] = i420[:lh]
        uv = i420[lh:].reshape(-1)
        q = (lw // 2) * (lh // 2)
        half = (lh // 2) * (stride // 2)
        flat[lh * stride: lh * stride + half].reshape(lh // 2, stride // 2)[:, : lw // 2] = uv[:q].reshape(lh // 2, -1)
        flat[lh * stride + half: lh * stride + 2 * half].reshape(lh // 2, stride // 2)[:, : lw // 2] = (
            uv[q:].reshape(lh // 2, -1)
        )
        main = np.zeros((mh, mw, 4), np.uint8)
        main[:, :, :3] = cv2.resize(self.image, (mw, mh), interpolation=cv2.INTER_AREA)
        self.outstanding = _Request(self, padded, main)
        return self.outstanding

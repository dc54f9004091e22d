"""The Pi camera through picamera2 (libcamera).

Two streams from one exposure: `main` (640x480 by default, only ever used for the hourly de-identified sample)
and `lores` at the model's input size, so the ISP scales the image and the CPU does not. The lores stream is
YUV420 (the only lores format the Pi 4's ISP offers); it is converted to RGB straight into a frame buffer.

Privacy: each libcamera request is copied into the camera's own `FramePool` buffers and handed back to
libcamera at once; the pool buffers are zeroed on `Frame.release()`, and the YUV scratch buffer right after
conversion. The ISP's own DMA buffers belong to the kernel; they are overwritten by the next exposures and
never mapped anywhere else by Umbra.

picamera2 comes from Raspberry Pi OS (`apt install python3-picamera2`) or the `pi` extra; on a laptop this
module imports, and `open()` says what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from hal.clock import Clock
from hal.errors import CameraError, CameraStalled, CameraUnavailable
from hal.frame import Frame, FramePool

log = logging.getLogger(__name__)


def _default_factory(camera_num: int) -> Any:
    try:
        from picamera2 import Picamera2
    except ImportError as e:
        raise CameraUnavailable(
            "picamera2 is not installed: on Raspberry Pi OS `sudo apt install python3-picamera2` (and create the "
            "venv with --system-site-packages), or `pip install '.[pi]'`; on a laptop use camera.kind = \"video\""
        ) from e
    return Picamera2(camera_num)  # IndexError: no such camera; RuntimeError: it would not open (PiCamera.open)


class PiCamera:
    """`Camera` on picamera2. `factory(camera_num)` returns a Picamera2-like object (tests may inject one)."""

    def __init__(
        self,
        *,
        clock: Clock,
        lores_size: tuple[int, int] = (300, 300),
        main_size: tuple[int, int] | None = (640, 480),
        fps: float = 10.0,
        camera_num: int = 0,
        stall_timeout_s: float = 2.0,
        pool_size: int = 2,
        factory: Callable[[int], Any] = _default_factory,
    ) -> None:
        if lores_size[0] % 2 or lores_size[1] % 2:
            raise CameraUnavailable(f"lores size {lores_size}: width and height must be even for YUV420")
        self.clock = clock
        self.lores_size = lores_size
        self.main_size = main_size
        self.fps = fps
        self.camera_num = camera_num
        self.stall_timeout_s = stall_timeout_s
        self.source_size = main_size or lores_size  # boxes are scaled to this (the sensor's field of view)
        self._factory = factory
        self._cam: Any = None
        self._seq = 0
        w, h = lores_size
        self._pool = FramePool((h, w, 3), (main_size[1], main_size[0], 3) if main_size else None, pool_size)
        self._i420 = np.zeros((h * 3 // 2, w), np.uint8)

    def open(self) -> None:
        if self._cam is not None:
            return
        try:
            cam = self._factory(self.camera_num)
        except IndexError as e:  # picamera2 indexes libcamera's list of cameras: there is no such camera
            raise CameraUnavailable(f"no camera {self.camera_num} found by libcamera; check the ribbon cable and "
                                    "`rpicam-hello --list-cameras`") from e
        except RuntimeError as e:  # the camera is there but would not open (busy with another process, say)
            raise CameraError(f"camera {self.camera_num} would not open: {e}") from e
        streams: dict[str, Any] = {"lores": {"size": self.lores_size, "format": "YUV420"}}
        # picamera2's "BGR888" is laid out R, G, B in memory (its names follow libcamera's DRM fourcc).
        main = {"size": self.main_size or self.lores_size, "format": "BGR888"}
        period_us = int(1e6 / self.fps)
        try:  # the same configuration on the same camera is refused every time: permanent
            config = cam.create_video_configuration(
                main=main, lores=streams["lores"], buffer_count=4, queue=False,
                controls={"FrameDurationLimits": (period_us, period_us)},
            )
            cam.configure(config)
        except Exception as e:  # libcamera raises RuntimeError and friends with its own messages
            _close_quietly(cam)
            raise CameraUnavailable(f"camera {self.camera_num} refuses the configuration (lores {self.lores_size} "
                                    f"YUV420, main {main['size']}, {self.fps} fps): {e}") from e
        try:  # a sensor that does not start (a frontend timeout) may start on the next try
            cam.start()
        except Exception as e:
            _close_quietly(cam)
            raise CameraError(f"camera {self.camera_num} would not start: {e}") from e
        self._cam = cam
        log.info("camera %d started: lores %s YUV420, main %s, %.1f fps", self.camera_num, self.lores_size,
                 self.main_size, self.fps)

    def probe(self) -> None:
        """Open and close the camera once, before the loop starts: a permanent fault (`CameraUnavailable`:
        picamera2 missing, no such camera, a configuration it refuses) is raised, so `umbra run` stops with it
        at once; a transient one is only logged, and the loop's reopening with backoff takes it from there."""
        try:
            self.open()
        except CameraUnavailable:
            raise
        except CameraError as e:
            log.warning("camera %d not ready at start (%s); the loop will retry", self.camera_num, e)
        finally:
            self.close()

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            _close_quietly(cam)
        self._i420.fill(0)

    def __enter__(self) -> PiCamera:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def capture(self) -> Frame:
        if self._cam is None:
            raise CameraError("camera is not open")
        try:
            job = self._cam.capture_request(wait=False)
            request = self._cam.wait(job, timeout=self.stall_timeout_s)
        except TimeoutError as e:
            raise CameraStalled(f"no frame from camera {self.camera_num} within {self.stall_timeout_s} s") from e
        except Exception as e:
            raise CameraError(f"camera {self.camera_num} failed: {e}") from e
        lores, main = self._pool.acquire()
        try:
            self._lores_to_rgb(request.make_array("lores"), lores)
            if main is not None:
                main[...] = request.make_array("main")[:, :, :3]
        except Exception as e:
            self._pool.give_back(lores, main)
            raise CameraError(f"bad frame from camera {self.camera_num}: {e}") from e
        finally:
            request.release()
            self._i420.fill(0)
        self._seq += 1
        return self._pool.frame(lores, main, self.clock.monotonic_ns(), self._seq, self.source_size)

    def _lores_to_rgb(self, yuv: np.ndarray, out: np.ndarray) -> None:
        """libcamera's YUV420 rows are padded to a stride; pack the planes tightly, then convert."""
        import cv2

        w, h = self.lores_size
        stride = yuv.shape[1]
        flat = yuv.reshape(-1)
        y_plane = flat[: h * stride].reshape(h, stride)[:, :w]
        half = (h // 2) * (stride // 2)
        u = flat[h * stride: h * stride + half].reshape(h // 2, stride // 2)[:, : w // 2]
        v = flat[h * stride + half: h * stride + 2 * half].reshape(h // 2, stride // 2)[:, : w // 2]
        packed = self._i420
        packed[:h] = y_plane
        packed[h:].reshape(-1)[: (w // 2) * (h // 2)] = u.reshape(-1)
        packed[h:].reshape(-1)[(w // 2) * (h // 2):] = v.reshape(-1)
        cv2.cvtColor(packed, cv2.COLOR_YUV2RGB_I420, dst=out)


def _close_quietly(cam: Any) -> None:
    for step in ("stop", "close"):
        try:
            getattr(cam, step)()
        except Exception as e:  # closing a camera that failed: nothing more to do than say so
            log.debug("camera %s failed: %s", step, e)

"""The camera contract. Implementations: `hal.picam.PiCamera` (picamera2) and `hal.video.VideoCamera`
(a video file or image folder, the bench's mock)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from hal.frame import Frame


@runtime_checkable
class Camera(Protocol):
    """A source of frames. Use as a context manager: `open()` on enter, `close()` on exit.

    `capture()` returns the next frame, whose buffers the camera owns; the caller must `release()` it
    (which zeroes it) in the same tick. Raises `CameraStalled` when no frame arrives within the camera's
    timeout, `CameraError` when the camera is not open or has failed; after either, `close()` then `open()`
    may bring it back. `CameraUnavailable` (from `open()` or `capture()`) before the camera has given a frame is
    permanent: the camera cannot work here as configured, and the caller must stop rather than retry. After it
    has given frames, the same error means the camera was lost mid-run (a loose cable, a power dip: no camera
    found): hardware that may come back, so the loop counts it and keeps retrying with backoff up to a limit
    (firmware.sensing.loop; hal.camera_bus fakes it). `fps` is the camera's native rate,
    `lores_size` the (width, height) of `Frame.pixels`, `main_size` that of `Frame.main` (or None when there
    is no main stream)."""

    fps: float
    lores_size: tuple[int, int]
    main_size: tuple[int, int] | None

    def open(self) -> None: ...

    def close(self) -> None: ...

    def capture(self) -> Frame: ...

    def __enter__(self) -> Camera: ...

    def __exit__(self, *exc: object) -> None: ...

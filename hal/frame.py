"""Frames: camera-owned buffers that are zeroed when released.

A `Frame` never owns its pixels: it borrows a buffer from its camera's `FramePool`. `release()` zeroes
every buffer the frame references and hands them back to the pool, so the camera can reuse them for the
next capture. A frame is a context manager; leaving the `with` block releases it even on error.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

import numpy as np

from hal.errors import CameraError


class Frame:
    """One captured image: `pixels` (the low-res stream at the model's input size, HxWx3 uint8 RGB),
    optionally `main` (the full-size stream, e.g. 640x480, used only for de-identified samples),
    `t_mono_ns` (monotonic capture time) and `seq` (the camera's frame counter)."""

    __slots__ = ("_pixels", "_main", "t_mono_ns", "seq", "source_size", "_on_release", "_released")

    def __init__(
        self,
        pixels: np.ndarray,
        main: np.ndarray | None,
        t_mono_ns: int,
        seq: int,
        source_size: tuple[int, int],
        on_release: Callable[[Frame], None] | None = None,
    ) -> None:
        self._pixels = pixels
        self._main = main
        self.t_mono_ns = t_mono_ns
        self.seq = seq
        self.source_size = source_size  # (width, height) of the sensor / video, for box scaling
        self._on_release = on_release
        self._released = False

    @property
    def pixels(self) -> np.ndarray:
        if self._released:
            raise CameraError(f"frame {self.seq} was released; its buffer is zeroed and reused")
        return self._pixels

    @property
    def main(self) -> np.ndarray | None:
        if self._released:
            raise CameraError(f"frame {self.seq} was released; its buffer is zeroed and reused")
        return self._main

    @property
    def released(self) -> bool:
        return self._released

    def buffers(self) -> tuple[np.ndarray, ...]:
        """Every buffer this frame references (for tests that check zeroing)."""
        return tuple(b for b in (self._pixels, self._main) if b is not None)

    def release(self) -> None:
        """Zero every buffer and return it to the camera. Idempotent."""
        if self._released:
            return
        for buf in self.buffers():
            buf.fill(0)
        self._released = True
        if self._on_release is not None:
            self._on_release(self)

    def __enter__(self) -> Frame:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class FramePool:
    """A fixed set of preallocated buffers a camera fills and reuses. Capturing when every buffer is out
    raises: frames are dropped rather than queued, and a caller that never releases is a bug."""

    def __init__(
        self,
        lores_shape: tuple[int, int, int],
        main_shape: tuple[int, int, int] | None,
        size: int = 2,
    ) -> None:
        if size < 1:
            raise ValueError("a frame pool needs at least one buffer")
        self._free: list[tuple[np.ndarray, np.ndarray | None]] = [
            (
                np.zeros(lores_shape, dtype=np.uint8),
                np.zeros(main_shape, dtype=np.uint8) if main_shape is not None else None,
            )
            for _ in range(size)
        ]
        self.size = size
        self.lores_shape = lores_shape
        self.main_shape = main_shape

    @property
    def free(self) -> int:
        return len(self._free)

    def acquire(self) -> tuple[np.ndarray, np.ndarray | None]:
        if not self._free:
            raise CameraError(
                f"all {self.size} frame buffers are in use: release() each frame in the tick that took it"
            )
        return self._free.pop()

    def frame(
        self, lores: np.ndarray, main: np.ndarray | None, t_mono_ns: int, seq: int,
        source_size: tuple[int, int],
    ) -> Frame:
        return Frame(lores, main, t_mono_ns, seq, source_size, on_release=self._give_back)

    def give_back(self, lores: np.ndarray, main: np.ndarray | None) -> None:
        """Return buffers taken by `acquire()` that never became a frame (a failed capture)."""
        lores.fill(0)
        if main is not None:
            main.fill(0)
        self._free.append((lores, main))

    def _give_back(self, frame: Frame) -> None:
        bufs = frame.buffers()
        self._free.append((bufs[0], bufs[1] if len(bufs) > 1 else None))


def letterbox_rect(src: tuple[int, int], dst: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where an image of size `src` (w, h) lands inside `dst` (w, h) when fitted whole, aspect ratio kept and
    centred: (x0, y0, w, h). The main stream is the sensor's view fitted this way (never stretched); bars
    around it are black."""
    sw, sh = src
    dw, dh = dst
    if sw <= 0 or sh <= 0:
        return 0, 0, dw, dh
    scale = min(dw / sw, dh / sh)
    w, h = min(dw, max(1, round(sw * scale))), min(dh, max(1, round(sh * scale)))
    return (dw - w) // 2, (dh - h) // 2, w, h


def letterbox_into(src: np.ndarray, dst: np.ndarray, interpolation: int | None = None) -> None:
    """Fits `src` whole into the preallocated `dst` (aspect ratio kept, centred, black bars), in place."""
    import cv2

    x0, y0, w, h = letterbox_rect((src.shape[1], src.shape[0]), (dst.shape[1], dst.shape[0]))
    if (w, h) == (dst.shape[1], dst.shape[0]):
        cv2.resize(src, (w, h), dst=dst, interpolation=cv2.INTER_AREA if interpolation is None else interpolation)
        return
    dst.fill(0)
    dst[y0:y0 + h, x0:x0 + w] = cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)

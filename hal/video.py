"""VideoCamera: the bench's mock camera, over a video file or a folder of images, at the source's own rate or
as fast as asked. Like the Pi camera it owns a small pool of buffers it reuses: each capture decodes into
one reusable decode buffer, resizes into the pool's low-res (model input) buffer and fits the whole view into
the main buffer (aspect ratio kept, black bars: `hal.frame.letterbox_rect`), and zeroes the
decode buffer; the frame's `release()` zeroes the rest.

With `realtime` it behaves as a camera does: frame n of the source comes due at open + n / fps on the
injected clock; a capture waits for the next frame not yet taken, or, when the caller was busy and later
ones came due meanwhile, skips to the latest one due (`skipped` counts the frames never delivered). Each
frame carries its own capture time on that timeline (`t_mono_ns`) and its source frame number (`seq`,
1-based), not the time or the count of captures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hal.clock import Clock, due_frame, due_ns
from hal.errors import CameraError, CameraUnavailable, EndOfStream
from hal.frame import Frame, FramePool, letterbox_into
from hal.imagehead import ImageHeaderError, image_size

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
MAX_SIDE = 8192  # pixels: as [camera] main_size; a larger source is refused before a frame buffer is made


def _side_checked(path: Path, error: type[CameraError]) -> None:
    """Refuse an image past MAX_SIDE from its header, before it is decoded (`hal.imagehead`): OpenCV would
    decode it whole first. A file whose header states no size is refused too (`error`: CameraUnavailable for
    the first image, CameraError, a skipped frame, for a later one)."""
    try:
        w, h = image_size(path)
    except (ImageHeaderError, OSError) as e:
        raise error(f"cannot decode {path}: {getattr(e, 'strerror', None) or e}") from e
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        raise error(f"{path} is {w}x{h} pixels; at most {MAX_SIDE}x{MAX_SIDE} is read")


class VideoCamera:
    def __init__(
        self,
        source: Path,
        *,
        clock: Clock,
        lores_size: tuple[int, int] = (300, 300),
        main_size: tuple[int, int] | None = (640, 480),
        fps: float | None = None,
        realtime: bool = False,
        loop: bool = False,
        pool_size: int = 2,
        stall_timeout_s: float = 2.0,
    ) -> None:
        self.source = Path(source)
        self.clock = clock
        self.lores_size = lores_size
        self.main_size = main_size
        self.realtime = realtime
        self.loop = loop
        self.stall_timeout_s = stall_timeout_s
        self._fps_override = fps
        self.fps = fps or 0.0
        self._pool = FramePool(
            (lores_size[1], lores_size[0], 3), (main_size[1], main_size[0], 3) if main_size else None, pool_size
        )
        self._cap: Any = None  # cv2.VideoCapture while a video is open
        self._images: list[Path] = []
        self._index = 0
        self._decode: np.ndarray | None = None
        self.source_size = (0, 0)
        self._seq = 0  # the source frame number of the last frame delivered (1-based)
        self._t0_ns = 0
        self.skipped = 0  # realtime: frames that came due while the caller was busy, never delivered

    @property
    def pool(self) -> FramePool:
        return self._pool

    def open(self) -> None:
        import cv2

        if self.source.is_dir():
            self._images = sorted(p for p in self.source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._images:
                raise CameraUnavailable(f"{self.source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            _side_checked(self._images[0], CameraUnavailable)
            first = cv2.imread(str(self._images[0]))
            if first is None:
                raise CameraUnavailable(f"cannot decode {self._images[0]}")
            h, w = first.shape[:2]
            first.fill(0)
            self.fps = self._fps_override or 10.0
        else:
            if not self.source.is_file():
                why = "is not a regular file" if self.source.exists() else "not found"
                raise CameraUnavailable(f"video {self.source} {why}")
            cap = cv2.VideoCapture(str(self.source))
            if not cap.isOpened():
                raise CameraUnavailable(f"cannot open video {self.source}")
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if w < 1 or h < 1:  # the decoder took the file but found no picture in it (an image, say)
                cap.release()
                raise CameraUnavailable(f"{self.source} is not a video this camera can decode (no picture size)")
            self._cap = cap
            self.fps = self._fps_override or cap.get(cv2.CAP_PROP_FPS) or 10.0
        if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
            self.close()
            raise CameraUnavailable(f"{self.source} is {w}x{h} pixels; at most {MAX_SIDE}x{MAX_SIDE} is read")
        self.source_size = (w, h)
        self._decode = np.zeros((h, w, 3), np.uint8)
        self._t0_ns = self.clock.monotonic_ns()
        if self.realtime:  # the source starts again from its first frame, on a timeline that starts now
            self._seq = 0

    def probe(self) -> tuple[int, int]:
        """Check the source once, before the loop starts, and return its (width, height): a missing, empty or
        undecodable source is a CameraUnavailable naming it (permanent: the loop would retry it for ever)."""
        if self.source.is_file() and self.source.stat().st_size == 0:
            raise CameraUnavailable(f"video {self.source} is empty (0 bytes)")
        self.open()
        try:
            if self._cap is not None and self._decode is not None and not self._read_into(self._decode):
                raise CameraUnavailable(f"{self.source} is not a video this camera can decode (no first frame)")
            if self.source_size[0] < 1 or self.source_size[1] < 1:
                raise CameraUnavailable(f"{self.source} has no picture size")
            return self.source_size
        finally:
            self.close()
            self._seq, self._index = 0, 0

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        if self._decode is not None:
            self._decode.fill(0)
        self._images = []

    def capture(self) -> Frame:
        import cv2

        if self._decode is None or (self._cap is None and not self._images):
            raise CameraError("camera is not open")
        t_ns = self._wait_and_skip() if self.realtime else None
        if not self._read_into(self._decode):
            raise EndOfStream(f"{self.source.name}: no more frames after {self._seq}")
        lores, main = self._pool.acquire()
        try:
            cv2.resize(self._decode, self.lores_size, dst=lores, interpolation=cv2.INTER_AREA)
            cv2.cvtColor(lores, cv2.COLOR_BGR2RGB, dst=lores)
            if main is not None:
                letterbox_into(self._decode, main)  # the whole view, aspect ratio kept: never stretched
                cv2.cvtColor(main, cv2.COLOR_BGR2RGB, dst=main)
        except cv2.error as e:
            self._pool.give_back(lores, main)
            raise CameraError(f"corrupt frame {self._seq + 1} in {self.source.name}: {e}") from e
        finally:
            self._decode.fill(0)
        self._seq += 1
        stamp = self.clock.monotonic_ns() if t_ns is None else t_ns  # as fast as asked: when it was ready
        return self._pool.frame(lores, main, stamp, self._seq, self.source_size)

    def _wait_and_skip(self) -> int:
        """Realtime: wait for the next frame, or skip past the ones that came due while the caller was busy;
        returns the capture time of the frame about to be read (frame `self._seq`, 0-based)."""
        index = due_frame(self.clock, self._t0_ns, self.fps, self._seq)
        while self._seq < index:
            if not self._skip_one():
                raise EndOfStream(f"{self.source.name}: no more frames after {self._seq}")
            self._seq += 1
            self.skipped += 1
        return due_ns(self._t0_ns, self.fps, index)

    def _skip_one(self) -> bool:
        """Pass over one source frame without decoding it into a buffer."""
        if self._cap is not None:
            if self._cap.grab():
                return True
            if not self.loop:
                return False
            import cv2

            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            return bool(self._cap.grab())
        if self._index >= len(self._images):
            if not self.loop:
                return False
            self._index = 0
        self._index += 1
        return True

    def _read_into(self, buf: np.ndarray) -> bool:
        import cv2

        if self._cap is not None:
            try:
                ok, out = self._cap.read(buf)
                if not ok and self.loop and self._seq:
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, out = self._cap.read(buf)
            except cv2.error as e:  # a frame the decoder cannot put in the source's picture size
                why = " ".join(str(e).split())
                raise CameraError(f"corrupt frame {self._seq + 1} in {self.source.name}: {why}") from e
            if ok and out is not buf:  # the decoder would not reuse our buffer: copy, then wipe its own
                buf[...] = out
                out.fill(0)
            return bool(ok)
        if self._index >= len(self._images):
            if not self.loop:
                return False
            self._index = 0
        path = self._images[self._index]
        self._index += 1
        _side_checked(path, CameraError)
        img = cv2.imread(str(path))
        if img is None:
            raise CameraError(f"cannot decode {path}")
        if img.shape != buf.shape:  # resized, it would move every zone the homography places: a counted fault
            img.fill(0)
            raise CameraError(f"{path} is {img.shape[1]}x{img.shape[0]} pixels, the source's "
                              f"frames {buf.shape[1]}x{buf.shape[0]}: frame skipped")
        buf[...] = img
        img.fill(0)
        return True

    def __enter__(self) -> VideoCamera:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

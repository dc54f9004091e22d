"""A synthetic camera: frames of procedural noise at a given size, from a seeded generator. It behaves like
the real cameras where the loop can tell (a pool of reused buffers, a monotonic timestamp from the clock,
optional end of stream) and costs almost nothing, so loop tests and benchmarks measure the loop itself."""

from __future__ import annotations

import numpy as np

from hal.clock import Clock
from hal.errors import CameraError, EndOfStream
from hal.frame import Frame, FramePool


class SyntheticCamera:
    def __init__(
        self,
        clock: Clock,
        *,
        lores_size: tuple[int, int] = (300, 300),
        main_size: tuple[int, int] | None = (640, 480),
        source_size: tuple[int, int] = (768, 576),
        fps: float = 10.0,
        frames: int | None = None,
        seed: int = 0,
        pool_size: int = 2,
    ) -> None:
        self.clock = clock
        self.fps = fps
        self.lores_size = lores_size
        self.main_size = main_size
        self.source_size = source_size
        self.frames = frames
        self._rng = np.random.default_rng(seed)
        self._pool = FramePool(
            (lores_size[1], lores_size[0], 3),
            (main_size[1], main_size[0], 3) if main_size else None,
            pool_size,
        )
        self._seq = 0
        self._open = False
        self.opens = 0

    @property
    def pool(self) -> FramePool:
        return self._pool

    def open(self) -> None:
        self._open = True
        self.opens += 1

    def close(self) -> None:
        self._open = False

    def capture(self) -> Frame:
        if not self._open:
            raise CameraError("synthetic camera is not open")
        if self.frames is not None and self._seq >= self.frames:
            raise EndOfStream("synthetic camera reached its last frame")
        lores, main = self._pool.acquire()
        # fill a row band with noise, leave the rest constant: cheap and never all-zero
        lores[...] = 128
        lores[:8] = self._rng.integers(1, 255, size=lores[:8].shape, dtype=np.uint8)
        if main is not None:
            main[...] = 127
        self._seq += 1
        return self._pool.frame(lores, main, self.clock.monotonic_ns(), self._seq, self.source_size)

    def __enter__(self) -> SyntheticCamera:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""A synthetic camera: frames of procedural noise at a given size, from a seeded generator. It behaves like
the real cameras where the loop can tell (a pool of reused buffers, a monotonic timestamp from the clock,
optional end of stream) and costs almost nothing, so loop tests and benchmarks measure the loop itself."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hal.clock import Clock, due_frame, due_ns
from hal.detections import Detections
from hal.errors import CameraError, CameraStalled, DetectorError, EndOfStream
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
        stall_frames: frozenset[int] = frozenset(),
        stall_timeout_s: float = 2.0,
        realtime: bool = False,
    ) -> None:
        self.clock = clock
        self.realtime = realtime  # frames come due at open + n / fps; a busy caller's missed ones are skipped
        self.skipped = 0
        self._t0_ns = 0
        self.stall_frames = stall_frames  # captures (by attempt number) that time out, as a stuck sensor does
        self.stall_timeout_s = stall_timeout_s
        self.attempts = 0
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
        self._t0_ns = self.clock.monotonic_ns() - (due_ns(0, self.fps, self._seq) if self.realtime else 0)

    def close(self) -> None:
        self._open = False

    def capture(self) -> Frame:
        if not self._open:
            raise CameraError("synthetic camera is not open")
        t_ns = self.clock.monotonic_ns()
        if self.realtime:
            index = due_frame(self.clock, self._t0_ns, self.fps, self._seq)
            self.skipped += index - self._seq
            self._seq, t_ns = index, due_ns(self._t0_ns, self.fps, index)
        if self.frames is not None and self._seq >= self.frames:
            raise EndOfStream("synthetic camera reached its last frame")
        self.attempts += 1
        if self.attempts in self.stall_frames:
            self.clock.sleep_until_ns(self.clock.monotonic_ns() + int(self.stall_timeout_s * 1e9))
            raise CameraStalled(f"no frame within {self.stall_timeout_s} s")
        lores, main = self._pool.acquire()
        # fill a row band with noise, leave the rest constant: cheap and never all-zero
        lores[...] = 128
        lores[:8] = self._rng.integers(1, 255, size=lores[:8].shape, dtype=np.uint8)
        if main is not None:
            main[...] = 127
        self._seq += 1
        return self._pool.frame(lores, main, t_ns if self.realtime else self.clock.monotonic_ns(), self._seq,
                                self.source_size)

    def __enter__(self) -> SyntheticCamera:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyntheticCrowd:
    """A detector for synthetic frames: `people` walkers crossing the image in straight lines (bouncing at
    the edges) at a steady pace, reported as person detections keyed by `frame.seq`. It reads the frame's
    pixels as a real detector does (so the frame must be live), and can be told to fail on given frames."""

    backend = "synthetic"

    def __init__(
        self,
        people: int,
        *,
        seed: int = 0,
        fail_on: frozenset[int] = frozenset(),
        clock: Clock | None = None,
        cost_s: float | dict[int, float] = 0.0,
    ) -> None:
        self.clock = clock  # with a FakeClock and a cost, each call takes that long, as inference does
        self.cost_s = cost_s
        rng = np.random.default_rng(seed)
        self.people = people
        self._start = rng.uniform(0.1, 0.9, size=(people, 2))
        self._step = rng.uniform(-0.004, 0.004, size=(people, 2))
        self._size = np.column_stack((rng.uniform(0.02, 0.05, people), rng.uniform(0.08, 0.16, people)))
        self._scores = rng.uniform(0.35, 0.95, size=people).astype(np.float32)
        self.fail_on = fail_on
        self.calls = 0

    def detect(self, frame: Frame):

        self.calls += 1
        cost = self.cost_s.get(frame.seq, 0.0) if isinstance(self.cost_s, dict) else self.cost_s
        if self.clock is not None and cost:
            self.clock.sleep_until_ns(self.clock.monotonic_ns() + int(cost * 1e9))
        _ = frame.pixels[0, 0, 0]  # touching a released frame raises, as on real hardware
        if frame.seq in self.fail_on:
            raise DetectorError(f"synthetic failure on frame {frame.seq}")
        pos = self._start + self._step * frame.seq
        pos = 1 - np.abs(1 - np.mod(pos, 2))  # bounce between 0 and 1
        half = self._size / 2
        centre = np.clip(pos, half, 1 - half)
        boxes = np.hstack((centre - half, centre + half)).astype(np.float32)
        return Detections(boxes, self._scores.copy(), np.zeros(self.people, np.int32))

    def close(self) -> None:
        pass


People = Callable[[int], np.ndarray]  # frame seq -> (N, 4) people boxes [x0, y0, x1, y1] normalized


class SceneCamera:
    """Frames of a fixed scene: a still textured background with a little sensor noise, and people drawn as
    dark boxes where `people(seq)` puts them. An empty or still scene for the region gate, and one where a
    person walks in and stands."""

    def __init__(self, clock: Clock, people: People, *, lores_size: tuple[int, int] = (900, 600),
                 source_size: tuple[int, int] = (768, 576), fps: float = 7.0, frames: int | None = None,
                 noise: float = 2.0, seed: int = 0) -> None:
        self.clock, self.people, self.fps, self.frames = clock, people, fps, frames
        self.lores_size, self.main_size, self.source_size = lores_size, None, source_size
        self._rng = np.random.default_rng(seed)
        w, h = lores_size
        yy, xx = np.mgrid[0:h, 0:w]
        self._bg = (110 + 40 * np.sin(xx / 23.0) * np.cos(yy / 17.0)).astype(np.float32)
        self._noise = noise
        self._pool = FramePool((h, w, 3), None, 2)
        self._seq = 0
        self._open = False

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        self._open = False

    def capture(self) -> Frame:
        if not self._open:
            raise CameraError("scene camera is not open")
        if self.frames is not None and self._seq >= self.frames:
            raise EndOfStream("scene camera reached its last frame")
        self._seq += 1
        lores, _ = self._pool.acquire()
        img = self._bg + self._rng.normal(0, self._noise, self._bg.shape).astype(np.float32)
        w, h = self.lores_size
        for x0, y0, x1, y1 in np.asarray(self.people(self._seq), dtype=np.float64).reshape(-1, 4):
            img[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)] = 30.0
        lores[...] = np.clip(img, 0, 255).astype(np.uint8)[..., None]
        return self._pool.frame(lores, None, self.clock.monotonic_ns(), self._seq, self.source_size)

    def __enter__(self) -> SceneCamera:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SceneDetector:
    """Finds a `SceneCamera`'s people (score 0.8) as a detector run on regions would: only those lying
    whole (`whole` of their area) inside one of the regions asked for, everywhere when none are given.
    `invokes` counts regions (one pass of the whole frame without)."""

    backend = "synthetic"

    def __init__(self, people: People, whole: float = 0.9) -> None:
        self.people, self.whole = people, whole
        self.invokes = 0

    def detect(self, frame: Frame, regions: np.ndarray | None = None):
        from hal.detections import Detections

        _ = frame.pixels[0, 0, 0]  # the frame must be live
        boxes = np.asarray(self.people(frame.seq), dtype=np.float64).reshape(-1, 4)
        if regions is None:
            self.invokes += 1
        else:
            r = np.asarray(regions, dtype=np.float64).reshape(-1, 4)
            self.invokes += len(r)
            boxes = boxes[_inside_any(boxes, r, self.whole)]
        n = len(boxes)
        return Detections(boxes.astype(np.float32), np.full(n, 0.8, np.float32), np.zeros(n, np.int32))

    def close(self) -> None:
        pass


def _inside_any(boxes: np.ndarray, regions: np.ndarray, whole: float) -> np.ndarray:
    if not len(regions) or not len(boxes):
        return np.zeros(len(boxes), dtype=bool)
    ix = np.maximum(np.minimum(boxes[:, None, 2], regions[None, :, 2]) - np.maximum(boxes[:, None, 0],
                    regions[None, :, 0]), 0)
    iy = np.maximum(np.minimum(boxes[:, None, 3], regions[None, :, 3]) - np.maximum(boxes[:, None, 1],
                    regions[None, :, 1]), 0)
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[:, None]
    return np.any(ix * iy >= whole * area, axis=1)

"""The installer's live view, de-identified in the loop's tick and re-checked off it. While someone watches (a
request in the last `watch_timeout_s`), at most `view_hz` times a second and only when no view is in progress,
the tick resizes the low-res frame to 640 x 480, blurs every person (the tick's detections and confirmed
tracks) and every face BlazeFace finds as sample images are (firmware.samples.taking.deidentify_regions),
flattens up front the regions re-checks found someone in during the last 10 s, and encodes the JPEG; every
pixel buffer it made is zeroed before the tick ends, like every other buffer of the frame. Only the JPEG bytes
(de-identified, not yet re-checked) and the overlay data (this tick's detections, the confirmed tracks, the
counts, the geometry) go to a background worker (one thread at nice 19, so that its re-checks take the CPU
time the loop leaves rather than the loop's; an injectable executor). The worker decodes the
JPEG exactly as it would be served and checks it with the face detector and the person re-check; when they
find someone, every region they found in the view is flattened on the decoded image with its own size around
it (filled with its mean colour: no shape is left to find, and the neighbour a blur made stand out goes with
it), re-encoded and checked again, until one is clean (served) or `verify_passes` + 1 checks have failed
(withheld, counted); the regions re-checks found are flattened up front in the next 10 s of views (often a
far person or a post the model reads as one, so a second check is seldom needed). The worker zeroes every
image it decoded before the job ends; a job that fails, in the tick or the worker, is counted (`failed`) and
logged, and the loop goes on. Only the finished view (encoded bytes and the overlay data: boxes, scores, ids,
counts) is published, for the web server's thread to serve. Hooks: `on_frame` (a frame hook: keeps this
tick's detections, no pixels) and `on_tracks` (a track hook: makes the JPEG and hands the job over).
`close()` at stop: a job not started is dropped, one running is waited for."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, replace
from typing import Any, ParamSpec, TypeVar

import numpy as np

from firmware.config.installer import InstallerConfig
from firmware.config.samples import SamplesConfig
from firmware.config.sensing import GeometryConfig
from firmware.installer.counts import RunCounts
from firmware.installer.overlay import ImagePlane, ground_grid, overlay_state
from firmware.samples.taking import FaceFinder, PersonFinder, deidentify_regions
from firmware.sensing.tracker import Track
from hal.clock import Clock
from hal.detections import Detections
from hal.frame import Frame

log = logging.getLogger(__name__)

VIEW_SIZE = (640, 480)
FLATTEN_WIDEN = 1.0  # before the next check, what the re-checks found is flattened with its size around it:
# on PETS09 the next check finds the neighbour the blur made stand out, just beside the last region
RECENT_NS = 10_000_000_000  # a region a re-check found someone in is flattened up front in views this long after
WORKER_NICE = 19  # the worker's re-checks run on CPU time the loop leaves (bench.installer_cost)


@dataclass(frozen=True, slots=True)
class ViewFrame:
    """One served view: JPEG bytes of the de-identified frame, the overlay, and the blurred regions
    (normalized xyxy, for the privacy tests)."""

    seq: int
    wall: float
    jpeg: bytes
    state: dict[str, Any]
    regions: tuple[tuple[float, float, float, float], ...]


P = ParamSpec("P")
T = TypeVar("T")


class InlineExecutor(Executor):
    """Runs each job at once in the caller's thread: the view made in the tick (`umbra draw`, tests)."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - held by the future, as a pool's would be
            future.set_exception(e)
        return future


@dataclass(slots=True)
class ViewJob:
    """What the tick hands the worker: the de-identified view as JPEG bytes (not yet re-checked: no raw
    pixels), the pixel regions blurred or flattened in it, and the overlay data as they stood in the tick."""

    jpeg: bytes
    regions: list[tuple[int, int, int, int]]
    source_size: tuple[int, int]
    detections: tuple[np.ndarray, np.ndarray]  # normalized boxes, scores
    tracks: tuple[Any, ...]  # confirmed tracks (immutable: firmware.sensing.tracker.Track)
    geometry: GeometryConfig
    counts: dict[str, Any]
    seq: int
    wall: float


class InstallerView:
    def __init__(self, config: InstallerConfig, geometry: GeometryConfig, counts: RunCounts, clock: Clock,
                 faces: FaceFinder | None, person_finder: PersonFinder | None = None,
                 samples: SamplesConfig | None = None, min_score: float = 0.0,
                 executor: Executor | None = None, recheck_faces: FaceFinder | None = None) -> None:
        self.config, self.counts, self.clock = config, counts, clock
        self.geometry = geometry
        self.faces, self.persons = faces, person_finder  # the tick's face detector; the worker's person re-check
        self.recheck_faces = recheck_faces if recheck_faces is not None else faces  # the worker's face detector
        self.samples = samples or SamplesConfig()
        self.min_score = min_score
        self.latest: ViewFrame | None = None
        self.made = 0
        self.withheld = 0  # views not served: someone was still found after every re-check
        self.checks = 0  # JPEGs checked (1 to verify_passes + 1 a view)
        self.failed = 0  # view jobs that raised, in the tick or the worker (logged; no view, the loop goes on)
        self.listeners: list[Callable[[ViewFrame], None]] = []  # each new view, in the worker's thread
        self._period_ns = int(1e9 / config.view_hz)
        self._next_ns = 0
        self._watched_ns: int | None = None
        self._dets: tuple[np.ndarray, np.ndarray] = (np.zeros((0, 4)), np.zeros(0))
        self._grid: dict[str, Any] | None = None
        self._grid_for: tuple[GeometryConfig, tuple[int, int]] | None = None
        self._lock = threading.Lock()
        self._recent: list[tuple[int, tuple[int, int, int, int]]] = []  # (until, region): no pixels
        self._executor = executor  # None: a thread of our own, started with the first view
        self._own_executor = executor is None
        self._job: ViewJob | None = None  # the view in progress (at most one)
        self._future: Future[None] | None = None
        self._closed = False

    def watch(self) -> None:
        """A request came in: make views for the next `watch_timeout_s`."""
        self._watched_ns = self.clock.monotonic_ns()

    def set_geometry(self, geometry: GeometryConfig) -> None:
        """Zones, lines and homography the editor saved, drawn from the next view on (called in the loop's
        tick by firmware.installer.live, as the loop starts counting with them)."""
        self.geometry = geometry

    def watching(self, now_ns: int) -> bool:
        w = self._watched_ns
        return w is not None and now_ns - w <= int(self.config.watch_timeout_s * 1e9)

    def on_frame(self, frame: Frame, detections: Detections | None, wall: float) -> None:
        if detections is None:
            self._dets = (np.zeros((0, 4)), np.zeros(0))
            return
        p = detections.persons(self.min_score)
        self._dets = (p.boxes.astype(np.float64), p.scores.astype(np.float64))

    def on_tracks(self, frame: Frame, tracks: Sequence[Track], wall: float) -> None:
        """In the tick: when a view is due and none is in progress, the de-identified JPEG is made (its pixel
        buffers zeroed here) and goes to the worker with the overlay data."""
        now = self.clock.monotonic_ns()
        if self._closed or now < self._next_ns or not self.watching(now) or self.busy():
            return  # one in progress: this tick makes none, the next one tries again
        self._next_ns = now + self._period_ns
        try:
            job = self._capture(frame.pixels, frame.source_size, tracks, frame.seq, wall)
        except Exception:  # noqa: BLE001 - counted and logged (its buffers zeroed): the loop goes on
            with self._lock:
                self.failed += 1
            log.exception("installer view not made in the tick (frame %d)", frame.seq)
            return
        with self._lock:
            self._job = job
        try:
            future = self._pool().submit(self._work, job)
        except Exception:  # noqa: BLE001 - (a pool shut down): counted, the loop goes on
            with self._lock:
                self._job = None
                self.failed += 1
            log.exception("installer view not handed to its worker (frame %d)", job.seq)
            return
        with self._lock:
            if self._job is job:
                self._future = future

    def _pool(self) -> Executor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="umbra-installer-view",
                                                initializer=lower_priority)
        return self._executor

    def _capture(self, pixels: np.ndarray, source_size: tuple[int, int], tracks: Sequence[Any], seq: int,
                 wall: float) -> ViewJob:
        """The job of one frame: its de-identified JPEG and the overlay data. Every pixel buffer made here is
        zeroed before it returns, whatever happens."""
        counts = self.counts.snapshot().to_json()
        boxes, _ = self._dets
        jpeg, regions = self._deidentified_jpeg(pixels, source_size, boxes, tracks)
        return ViewJob(jpeg, regions, source_size, self._dets, tuple(tracks), self.geometry, counts, seq, wall)

    def _deidentified_jpeg(self, pixels: np.ndarray, source_size: tuple[int, int], boxes: np.ndarray,
                           tracks: Sequence[Any]) -> tuple[bytes, list[tuple[int, int, int, int]]]:
        """`pixels` resized to the view, every person (the detections' normalized `boxes` and the tracks)
        and face blurred, the recent re-check regions flattened, JPEG-encoded: the bytes and the pixel
        regions blurred or flattened. Every buffer made here is zeroed before it returns."""
        import cv2

        w, h = source_size
        scale = np.array([w, h, w, h], dtype=np.float64)
        track_boxes = np.array([t.box for t in tracks], dtype=np.float64).reshape(-1, 4) / scale
        small = cv2.resize(pixels, VIEW_SIZE, interpolation=cv2.INTER_AREA)
        held: list[np.ndarray] = []
        try:
            blurred, regions = deidentify_regions(small, np.vstack((boxes, track_boxes)), self.faces,
                                                  replace(self.samples, verify_passes=0), held=held)
            now = self.clock.monotonic_ns()
            with self._lock:
                self._recent = [(t, r) for t, r in self._recent if t > now]
                recent = [r for _, r in self._recent]
            for r in recent:  # where a re-check found someone lately: flattened up front
                flatten_region(blurred, *r)
                regions.append(r)
            held.append(cv2.cvtColor(blurred, cv2.COLOR_RGB2BGR))
            return _encode(held[-1], self.samples.jpeg_quality), regions
        finally:
            small.fill(0)
            for a in held:
                a.fill(0)

    def _work(self, job: ViewJob) -> None:
        """In the worker: the view of `job` re-checked and published (or withheld)."""
        try:
            view = self._finish(job)
            if view is not None:
                self.latest = view  # one reference: the server thread sees the old view or the new one
                with self._lock:
                    self.made += 1
                for listener in self.listeners:
                    listener(view)
        except Exception:  # noqa: BLE001 - counted and logged: a view is not worth the sensor
            with self._lock:
                self.failed += 1
            log.exception("installer view failed (frame %d); no view from it", job.seq)
        finally:
            with self._lock:
                if self._job is job:
                    self._job, self._future = None, None

    def busy(self) -> bool:
        """Whether a view is in progress."""
        with self._lock:
            return self._job is not None

    def drain(self) -> None:
        """Waits for the view in progress, if any (benchmarks, tests, stop)."""
        with self._lock:
            future = self._future
        if future is not None:
            wait_futures([future])

    def close(self) -> None:
        """At stop: no more views; a job not started yet is dropped, one running is waited for; our own
        worker thread ends."""
        self._closed = True
        with self._lock:
            job, future = self._job, self._future
        if job is not None and future is not None and future.cancel():
            with self._lock:
                if self._job is job:
                    self._job, self._future = None, None
        elif future is not None:
            wait_futures([future])
        if self._own_executor and self._executor is not None:
            self._executor.shutdown(wait=True)

    def make(self, pixels: np.ndarray, source_size: tuple[int, int], tracks: Sequence[Any], seq: int,
             wall: float) -> ViewFrame | None:
        """The view of one frame made at once, in the caller's thread, with the overlay data as they stand
        (tests, `umbra draw`), or None when it cannot be made clean (withheld, counted); every pixel buffer
        made here is zeroed before it returns."""
        return self._finish(self._capture(pixels, source_size, tracks, seq, wall))

    def _finish(self, job: ViewJob) -> ViewFrame | None:
        """The view of `job` once its JPEG passed the re-checks, or None when it cannot be made clean
        (withheld, counted)."""
        jpeg = self._checked_jpeg(job.jpeg, job.regions)
        if jpeg is None:
            with self._lock:
                self.withheld += 1
            return None
        vw, vh = VIEW_SIZE
        norm = tuple((r[0] / vw, r[1] / vh, r[2] / vw, r[3] / vh) for r in job.regions)
        state = overlay_state(job.geometry, job.source_size, job.detections, job.tracks, job.counts,
                              self._grid_of(job.geometry, job.source_size))
        state.update(seq=job.seq, wall=job.wall)
        return ViewFrame(job.seq, job.wall, jpeg, state, norm)

    def _checked_jpeg(self, jpeg: bytes, regions: list[tuple[int, int, int, int]]) -> bytes | None:
        """Decodes `jpeg` (exactly as it would be served) and checks it with the face detector and the person
        re-check; when they find someone, every region found in this view is flattened on the decoded image
        with its own size around it (a blurred blob can still read as a person at the re-check's low
        threshold, and the blur can make a neighbour stand out; a flat patch is neither), re-encoded and
        checked again, up to `verify_passes` + 1 checks. Returns the first JPEG in which nothing is found,
        or None; every decoded image is zeroed before it returns."""
        import cv2

        cfg = self.samples
        this_view: list[tuple[int, int, int, int]] = []  # every region the re-checks found in this view
        for k in range(cfg.verify_passes + 1):
            seen = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if seen is None:
                raise ValueError("the view's JPEG does not decode")
            try:
                with self._lock:
                    self.checks += 1
                found = self._recheck(seen)
                if not found:
                    return jpeg
                until = self.clock.monotonic_ns() + RECENT_NS
                this_view += found
                with self._lock:
                    self._recent += [(until, _widen(r, FLATTEN_WIDEN)) for r in found]
                if k < cfg.verify_passes:  # another check follows: flatten, neighbours included
                    for r in this_view:
                        wide = _widen(r, FLATTEN_WIDEN)
                        flatten_region(seen, *wide)
                        regions.append(wide)
                    jpeg = _encode(seen, cfg.jpeg_quality)
            finally:
                seen.fill(0)
        log.info("installer view withheld: someone was still found after %d re-checks", cfg.verify_passes + 1)
        return None

    def _recheck(self, seen_bgr: np.ndarray) -> list[tuple[int, int, int, int]]:
        """What the face detector and the person re-check find in the decoded JPEG: pixel regions (with
        their margins, as samples')."""
        cfg = self.samples
        vw, vh = VIEW_SIZE
        scale = np.array([vw, vh, vw, vh], dtype=np.float64)
        seen_rgb = np.ascontiguousarray(seen_bgr[:, :, ::-1])
        found = []
        try:
            if self.recheck_faces is not None:
                found += [_grow(b * scale, cfg.face_margin)
                          for b in np.asarray(self.recheck_faces.detect(seen_rgb).boxes, np.float64).reshape(-1, 4)]
            if self.persons is not None:
                found += [_grow(b * scale, cfg.person_margin)
                          for b in np.asarray(self.persons(seen_rgb), np.float64).reshape(-1, 4)]
        finally:
            seen_rgb.fill(0)
        return found

    def _grid_of(self, geometry: GeometryConfig, size: tuple[int, int]) -> dict[str, Any]:
        if self._grid_for != (geometry, size):
            self._grid = ground_grid(ImagePlane(geometry, size))
            self._grid_for = (geometry, size)
        assert self._grid is not None
        return self._grid


def lower_priority() -> None:
    """The calling thread (only it: on Linux a thread's nice value is its own) at WORKER_NICE, so that the
    view's re-checks take the CPU time the loop leaves rather than the loop's; threads it starts inherit it.
    Where that cannot be set, the thread runs on at its priority (logged)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)
    except (AttributeError, OSError) as e:
        log.warning("installer view worker left at its priority (%s)", e)


def _encode(bgr: np.ndarray, quality: int) -> bytes:
    """`bgr` as JPEG bytes; the encoder's own array zeroed."""
    import cv2

    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("the view's JPEG encoding failed")
    try:
        return buf.tobytes()
    finally:
        buf.fill(0)


def flatten_region(img: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    """Fills img[y0:y1, x0:x1] with its mean colour, in place."""
    patch = img[y0:y1, x0:x1]
    if patch.size:
        patch[...] = patch.reshape(-1, patch.shape[-1]).mean(axis=0).round().astype(img.dtype)


def _widen(r: tuple[int, int, int, int], by: float) -> tuple[int, int, int, int]:
    """A pixel region plus `by` of its size on every side, clipped to the view."""
    return _grow(np.asarray(r, dtype=np.float64), by)


def _grow(box: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    """A pixel box plus `margin` of its size on every side, clipped to the view."""
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    vw, vh = VIEW_SIZE
    return (max(0, int(np.floor(x0 - mx))), max(0, int(np.floor(y0 - my))),
            min(vw, int(np.ceil(x1 + mx))), min(vh, int(np.ceil(y1 + my))))

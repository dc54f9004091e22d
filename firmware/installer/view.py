"""The installer's live view, made in the loop's tick: while someone watches (a request in the last
`watch_timeout_s`), at most `view_hz` times a second, the low-res frame is copied, resized to 640 x 480,
every person (this tick's detections and confirmed tracks) and every face blurred as sample images are
(firmware.samples.taking.deidentify_regions), encoded as JPEG, and every copy zeroed before the frame is
released. Only the encoded bytes and the overlay data (boxes, scores, ids, counts) are kept, for the web
server's thread to serve. Hooks: `on_frame` (a frame hook: keeps this tick's detections, no pixels) and
`on_tracks` (a track hook: makes the view)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from firmware.config.installer import InstallerConfig
from firmware.config.samples import SamplesConfig
from firmware.config.sensing import GeometryConfig
from firmware.installer.counts import RunCounts
from firmware.installer.overlay import ImagePlane, ground_grid, overlay_state
from firmware.samples.taking import FaceFinder, PersonFinder, deidentify_regions
from hal.clock import Clock
from hal.detections import Detections

log = logging.getLogger(__name__)

VIEW_SIZE = (640, 480)


@dataclass(frozen=True, slots=True)
class ViewFrame:
    """One served view: JPEG bytes of the de-identified frame, the overlay, and the blurred regions
    (normalized xyxy, for the privacy tests)."""

    seq: int
    wall: float
    jpeg: bytes
    state: dict[str, Any]
    regions: tuple[tuple[float, float, float, float], ...]


class InstallerView:
    def __init__(self, config: InstallerConfig, geometry: GeometryConfig, counts: RunCounts, clock: Clock,
                 faces: FaceFinder | None, person_finder: PersonFinder | None = None,
                 samples: SamplesConfig | None = None, min_score: float = 0.0) -> None:
        self.config, self.counts, self.clock = config, counts, clock
        self.geometry = geometry
        self.faces, self.persons = faces, person_finder
        self.samples = samples or SamplesConfig()
        self.min_score = min_score
        self.latest: ViewFrame | None = None
        self.made = 0
        self.listeners: list[Callable[[ViewFrame], None]] = []  # each new view (tests, benchmarks)
        self._period_ns = int(1e9 / config.view_hz)
        self._next_ns = 0
        self._watched_ns: int | None = None
        self._dets: tuple[np.ndarray, np.ndarray] = (np.zeros((0, 4)), np.zeros(0))
        self._grid: dict[str, Any] | None = None
        self._grid_for: tuple[GeometryConfig, tuple[int, int]] | None = None
        self._lock = threading.Lock()

    def watch(self) -> None:
        """A request came in: make views for the next `watch_timeout_s`."""
        self._watched_ns = self.clock.monotonic_ns()

    def set_geometry(self, geometry: GeometryConfig) -> None:
        """Zones and lines the editor saved, drawn from the next view on (the loop counts with the old ones
        until the sensor restarts)."""
        self.geometry = geometry

    def watching(self, now_ns: int) -> bool:
        w = self._watched_ns
        return w is not None and now_ns - w <= int(self.config.watch_timeout_s * 1e9)

    def on_frame(self, frame: Any, detections: Detections | None, wall: float) -> None:
        if detections is None:
            self._dets = (np.zeros((0, 4)), np.zeros(0))
            return
        p = detections.persons(self.min_score)
        self._dets = (p.boxes.astype(np.float64), p.scores.astype(np.float64))

    def on_tracks(self, frame: Any, tracks: Sequence[Any], wall: float) -> None:
        now = self.clock.monotonic_ns()
        if now < self._next_ns or not self.watching(now):
            return
        self._next_ns = now + self._period_ns
        view = self.make(frame.pixels, frame.source_size, tracks, frame.seq, wall)
        self.latest = view
        self.made += 1
        for listener in self.listeners:
            listener(view)

    def make(self, pixels: np.ndarray, source_size: tuple[int, int], tracks: Sequence[Any], seq: int,
             wall: float) -> ViewFrame:
        """The view of one frame; every pixel copy made here is zeroed before it returns."""
        import cv2

        boxes, scores = self._dets
        w, h = source_size
        scale = np.array([w, h, w, h], dtype=np.float64)
        track_boxes = np.array([t.box for t in tracks], dtype=np.float64).reshape(-1, 4) / scale
        small = cv2.resize(pixels, VIEW_SIZE, interpolation=cv2.INTER_AREA)
        try:
            blurred, regions = deidentify_regions(small, np.vstack((boxes, track_boxes)), self.faces,
                                                  self.samples, self.persons)
            try:
                bgr = cv2.cvtColor(blurred, cv2.COLOR_RGB2BGR)
                ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
                bgr.fill(0)
            finally:
                blurred.fill(0)
        finally:
            small.fill(0)
        if not ok:
            raise ValueError("the view's JPEG encoding failed")
        vw, vh = VIEW_SIZE
        norm = tuple((r[0] / vw, r[1] / vh, r[2] / vw, r[3] / vh) for r in regions)
        state = overlay_state(self.geometry, source_size, (boxes, scores), tracks,
                              self.counts.snapshot().to_json(), self._grid_of(source_size))
        state.update(seq=seq, wall=wall)
        return ViewFrame(seq, wall, buf.tobytes(), state, norm)

    def _grid_of(self, size: tuple[int, int]) -> dict[str, Any]:
        if self._grid_for != (self.geometry, size):
            self._grid = ground_grid(ImagePlane(self.geometry, size))
            self._grid_for = (self.geometry, size)
        assert self._grid is not None
        return self._grid

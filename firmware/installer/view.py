"""The installer's live view, made in the loop's tick: while someone watches (a request in the last
`watch_timeout_s`), at most `view_hz` times a second, the low-res frame is copied, resized to 640 x 480,
every person (this tick's detections and confirmed tracks) and every face blurred as sample images are
(firmware.samples.taking.deidentify_regions), encoded as JPEG; then the JPEG exactly as it would be served is
checked by the face detector and the person re-check, what they find blurred again and the new JPEG checked,
and before the last check every region they found in the view flattened with its own size around it (filled
with its mean colour: no shape is left to find, and the neighbour a blur made stand out goes with it), until
one is clean (served) or `verify_passes` + 1 checks have failed (withheld, counted); the regions re-checks
found are blurred up front for the next 10 s of views (often a far person or a post the model reads as one,
so a second check is seldom needed). Every copy is
zeroed before the frame is released. Only the encoded bytes and the overlay data (boxes, scores, ids,
counts) are kept, for the web server's thread to serve. Hooks: `on_frame` (a frame hook: keeps this tick's
detections, no pixels) and `on_tracks` (a track hook: makes the view)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from firmware.config.installer import InstallerConfig
from firmware.config.samples import SamplesConfig
from firmware.config.sensing import GeometryConfig
from firmware.installer.counts import RunCounts
from firmware.installer.overlay import ImagePlane, ground_grid, overlay_state
from firmware.samples.taking import FaceFinder, PersonFinder, blur_region, deidentify_regions
from firmware.sensing.tracker import Track
from hal.clock import Clock
from hal.detections import Detections
from hal.frame import Frame

log = logging.getLogger(__name__)

VIEW_SIZE = (640, 480)
FLATTEN_WIDEN = 1.0  # before the last check, what the re-checks found is flattened with its size around it:
# on PETS09 the next check finds the neighbour the blur made stand out, just beside the last region
RECENT_NS = 10_000_000_000  # a region a re-check found someone in is blurred up front in views this long after


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
        self.withheld = 0  # views not served: someone was still found after every re-check
        self.listeners: list[Callable[[ViewFrame], None]] = []  # each new view (tests, benchmarks)
        self._period_ns = int(1e9 / config.view_hz)
        self._next_ns = 0
        self._watched_ns: int | None = None
        self._dets: tuple[np.ndarray, np.ndarray] = (np.zeros((0, 4)), np.zeros(0))
        self._grid: dict[str, Any] | None = None
        self._grid_for: tuple[GeometryConfig, tuple[int, int]] | None = None
        self._lock = threading.Lock()
        self._recent: list[tuple[int, tuple[int, int, int, int], int]] = []  # (until, region, block): no pixels

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
        now = self.clock.monotonic_ns()
        if now < self._next_ns or not self.watching(now):
            return
        self._next_ns = now + self._period_ns
        view = self.make(frame.pixels, frame.source_size, tracks, frame.seq, wall)
        if view is None:
            return
        self.latest = view
        self.made += 1
        for listener in self.listeners:
            listener(view)

    def make(self, pixels: np.ndarray, source_size: tuple[int, int], tracks: Sequence[Any], seq: int,
             wall: float) -> ViewFrame | None:
        """The view of one frame, or None when it cannot be made clean (withheld, counted); every pixel copy
        made here is zeroed before it returns."""
        import cv2

        boxes, scores = self._dets
        w, h = source_size
        scale = np.array([w, h, w, h], dtype=np.float64)
        track_boxes = np.array([t.box for t in tracks], dtype=np.float64).reshape(-1, 4) / scale
        small = cv2.resize(pixels, VIEW_SIZE, interpolation=cv2.INTER_AREA)
        try:
            blurred, regions = deidentify_regions(small, np.vstack((boxes, track_boxes)), self.faces,
                                                  replace(self.samples, verify_passes=0))
            now = self.clock.monotonic_ns()
            self._recent = [(t, r, b) for t, r, b in self._recent if t > now]
            for _, r, block in self._recent:  # where a re-check found someone lately: blurred up front
                blur_region(blurred, *r, min_block_px=block)
                regions.append(r)
            try:
                jpeg = self._checked_jpeg(blurred, regions)
            finally:
                blurred.fill(0)
        finally:
            small.fill(0)
        if jpeg is None:
            self.withheld += 1
            return None
        vw, vh = VIEW_SIZE
        norm = tuple((r[0] / vw, r[1] / vh, r[2] / vw, r[3] / vh) for r in regions)
        state = overlay_state(self.geometry, source_size, (boxes, scores), tracks,
                              self.counts.snapshot().to_json(), self._grid_of(source_size))
        state.update(seq=seq, wall=wall)
        return ViewFrame(seq, wall, jpeg, state, norm)

    def _checked_jpeg(self, rgb: np.ndarray, regions: list[tuple[int, int, int, int]]) -> bytes | None:
        """Encodes `rgb`, then checks the JPEG exactly as it would be served with the face detector and the
        person re-check; what they find is blurred again (persons at twice the block, as samples) and the
        result checked again, up to `verify_passes` + 1 times; before the last check, what is found is
        flattened instead (a blurred blob can still read as a person at the re-check's low threshold; a flat
        patch cannot). Returns the first JPEG in which nothing is found, or None."""
        import cv2

        cfg = self.samples
        this_view: list[tuple[int, int, int, int]] = []  # every region the re-checks found in this view
        for k in range(cfg.verify_passes + 1):
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
            bgr.fill(0)
            if not ok:
                raise ValueError("the view's JPEG encoding failed")
            seen = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            if seen is None:
                raise ValueError("the view's own JPEG does not decode")
            try:
                found = self._recheck(seen)
            finally:
                seen.fill(0)
            if not found:
                return buf.tobytes()
            until = self.clock.monotonic_ns() + RECENT_NS
            for r, block in found:
                this_view.append(r)
                self._recent.append((until, r, block))
                if k < cfg.verify_passes - 1:
                    blur_region(rgb, *r, min_block_px=block)
                    regions.append(r)
            if k == cfg.verify_passes - 1:  # the next check is the last: flatten, neighbours included
                for r in this_view:
                    wide = _widen(r, FLATTEN_WIDEN)
                    flatten_region(rgb, *wide)
                    regions.append(wide)
        log.info("installer view withheld: someone was still found after %d re-checks", cfg.verify_passes + 1)
        return None

    def _recheck(self, seen_bgr: np.ndarray) -> list[tuple[tuple[int, int, int, int], int]]:
        """What the face detector and the person re-check find in the decoded JPEG: (pixel region, block)."""
        cfg = self.samples
        vw, vh = VIEW_SIZE
        scale = np.array([vw, vh, vw, vh], dtype=np.float64)
        seen_rgb = np.ascontiguousarray(seen_bgr[:, :, ::-1])
        found = []
        try:
            if self.faces is not None:
                found += [(_grow(b * scale, cfg.face_margin), cfg.min_block_px)
                          for b in np.asarray(self.faces.detect(seen_rgb).boxes, np.float64).reshape(-1, 4)]
            if self.persons is not None:
                for b in np.asarray(self.persons(seen_rgb), np.float64).reshape(-1, 4):
                    r = _grow(b * scale, cfg.person_margin)
                    found.append((r, max(cfg.min_block_px, max(r[2] - r[0], r[3] - r[1]) // 2)))
        finally:
            seen_rgb.fill(0)
        return found

    def _grid_of(self, size: tuple[int, int]) -> dict[str, Any]:
        if self._grid_for != (self.geometry, size):
            self._grid = ground_grid(ImagePlane(self.geometry, size))
            self._grid_for = (self.geometry, size)
        assert self._grid is not None
        return self._grid


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

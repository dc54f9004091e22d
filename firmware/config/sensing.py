"""Config sections of the sensing path: camera, detector, loop, tracker, geometry, quantizer, pseudonym."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from firmware.config.checks import number, numbers, whole

MAX_COORD_M = 1e5  # ground coordinates (zones, lines) within 100 km of the origin
MAX_VERTICES = 256
MIN_AREA_M2 = 0.01  # a zone smaller than 10 x 10 cm is no zone
MIN_LINE_M = 0.01
MAX_CONDITION = 1e8  # of the homography, normalised (see _conditioning); calibrated ones are ~10


@dataclass(frozen=True, slots=True)
class LoopConfig:
    detect_hz: float = 10.0
    emit_hz: float = 2.0
    min_score: float = 0.1  # detections below this never reach the tracker
    reopen_backoff_s: tuple[float, float] = (0.5, 30.0)  # first and largest wait before reopening a camera

    def validate(self) -> None:
        number("detect_hz", self.detect_hz, 0.1, 120, unit="Hz")
        number("emit_hz", self.emit_hz, 0.005, 2.0, lo_open=True, unit="records per track per second")
        if self.emit_hz > self.detect_hz:
            raise ValueError("emit_hz: cannot exceed detect_hz")
        number("min_score", self.min_score, 0, 1)
        numbers("reopen_backoff_s", self.reopen_backoff_s, 0, 3600, lo_open=True, unit="s")
        lo, hi = self.reopen_backoff_s
        if not lo <= hi:
            raise ValueError("reopen_backoff_s: needs [first, largest] with 0 < first <= largest")


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    high_score: float = 0.5  # detections at or above this start the first pass and may start tracks
    low_score: float = 0.0  # detections between low and high only extend tracks (second pass)
    new_track_score: float = 0.7  # an unmatched detection must score this to start a track
    match_iou: float = 0.1  # first pass: least IoU (after score fusion) to match
    low_match_iou: float = 0.3  # second pass: least IoU for a low-score detection
    tentative_match_iou: float = 0.3  # a newborn track's second sighting
    min_hits: int = 2  # sightings before a track is confirmed and reported
    max_lost_s: float = 1.5  # a track unseen this long has ended
    fuse_score: bool = True  # weigh IoU by detection score in the first pass (ByteTrack's MOT17 setting)
    pos_noise: float = 0.1  # process noise, position, as a share of box height per sqrt(second)
    vel_noise: float = 0.1  # process noise, velocity, as a share of box height per second per sqrt(second)
    meas_noise: float = 0.05  # measurement noise as a share of box height
    exact_noise: bool = True  # the process noise discretized exactly (white acceleration: the velocity's noise
    # reaches the position within a step, so gates widen with the seconds between frames); false: the diagonal
    # (pos_noise^2 dt, vel_noise^2 dt). bench/TRACKING.md: 19 of 57 left-out rows met with it, 18 without
    # Crossing and lost tracks (see _heading and _correct; 0 turns each off):
    direction_weight: float = 0.2  # similarity bonus, times the cosine, for a detection along a track's heading
    heading_sure: float = 2.0  # the bonus shrinks for a track whose speed is within this many variances of zero
    refound_after_s: float = 0.5  # a track found after this long unseen takes the straight path's velocity
    coast_s: float = 0.3  # a lost track is still reported (Track.unseen_s > 0), at its prediction, this long
    # (at most until max_lost_s ends it)
    camera_motion: float = 0.0  # share of the camera's own motion (told from the tracks) taken out; 0: fixed camera
    perspective: bool = True  # predict seen tracks at constant velocity in the world, not the image (_perspective)
    birth_speed: float = 2.0  # a newborn's speed prior (deviation), box heights per second
    # A track that lags (two sightings in a row off the same side horizontally, each by more than lag_sigma
    # deviations) has its horizontal estimate's uncertainty multiplied by lag_fade before the second (0: off):
    lag_sigma: float = 1.5
    lag_fade: float = 4.0
    # Score thresholds that follow the detector's own scale (firmware.sensing.score_scale): once confirmed tracks
    # have taken score_samples detections, high_score and new_track_score become these quantiles of those
    # detections' scores (the fixed values above are the prior until then); False: fixed thresholds.
    adaptive_scores: bool = False
    # Matching IoU buffered by the prediction's uncertainty: boxes grown by gate_sigma position deviations
    # (Tracker._iou; 0: plain IoU).
    gate_sigma: float = 0.0
    # A newborn's second sighting is matched on the IoU buffered by newborn_sigma deviations of its predicted
    # centre (its speed is the birth_speed prior; 0: plain IoU). With gate_sigma on, gate_sigma's buffer serves.
    newborn_sigma: float = 1.0
    high_quantile: float = 0.1
    birth_quantile: float = 0.3
    score_samples: int = 50
    # The box centre as an interacting multiple model (firmware.sensing.imm) of walking (constant velocity) and
    # standing (velocity forgotten), switching at this rate per second; 0: constant velocity alone.
    imm_switch_hz: float = 0.0
    # A lost track left unmatched may take a high-score detection whose centre is within recover_sigma
    # deviations of its prediction (Mahalanobis, on the innovation's covariance: the gate grows with the time
    # lost and the frame interval) and whose height is within a factor 1.5 of its own; 0: off.
    recover_sigma: float = 0.0

    def validate(self) -> None:
        for name in ("high_score", "low_score", "new_track_score", "match_iou", "low_match_iou",
                     "tentative_match_iou", "camera_motion", "high_quantile", "birth_quantile"):
            number(name, getattr(self, name), 0, 1)
        if self.low_score > self.high_score:
            raise ValueError(f"low_score: must not exceed high_score ({self.high_score}), got {self.low_score}")
        whole("min_hits", self.min_hits, 1, 1000)
        number("max_lost_s", self.max_lost_s, 0, 600, lo_open=True, unit="s")
        for name in ("coast_s", "refound_after_s"):
            number(name, getattr(self, name), 0, 600, unit="s")
        for name in ("direction_weight", "heading_sure", "lag_sigma", "gate_sigma", "newborn_sigma", "recover_sigma"):
            number(name, getattr(self, name), 0, 100)
        for name in ("pos_noise", "vel_noise", "meas_noise"):
            number(name, getattr(self, name), 0, 10, lo_open=True, unit="box heights")
        number("birth_speed", self.birth_speed, 0, 100, lo_open=True, unit="box heights per second")
        number("lag_fade", self.lag_fade, 1, 1000)
        number("imm_switch_hz", self.imm_switch_hz, 0, 100, unit="per second")
        whole("score_samples", self.score_samples, 1, 100_000)


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    name: str
    polygon: tuple[tuple[float, float], ...]  # ground-plane vertices in metres

    def validate(self) -> None:
        key = f"zone {self.name!r}: polygon"
        if not 3 <= len(self.polygon) <= MAX_VERTICES:
            raise ValueError(f"{key} needs at least 3 points (at most {MAX_VERTICES}), has {len(self.polygon)}")
        for i, p in enumerate(self.polygon):
            numbers(f"{key}[{i}]", p, -MAX_COORD_M, MAX_COORD_M, unit="m")
        pts = np.asarray(self.polygon, dtype=np.float64)
        crossing = _self_crossing(pts)
        if crossing is not None:
            raise ValueError(f"{key} crosses itself (edges {crossing[0]} and {crossing[1]}); list the corners "
                             "in order around the zone")
        area = 0.5 * abs(float(np.dot(pts[:, 0], np.roll(pts[:, 1], -1)) - np.dot(pts[:, 1], np.roll(pts[:, 0], -1))))
        if area < MIN_AREA_M2:
            raise ValueError(f"{key} encloses {area:.3g} m2; a zone needs at least {MIN_AREA_M2} m2")


@dataclass(frozen=True, slots=True)
class LineConfig:
    """A count line from `a` to `b` in metres. Crossing from its right side to its left (looking from a to
    b) counts as direction "+", the other way "-"."""

    name: str
    a: tuple[float, float]
    b: tuple[float, float]

    def validate(self) -> None:
        numbers(f"line {self.name!r}: a", self.a, -MAX_COORD_M, MAX_COORD_M, unit="m")
        numbers(f"line {self.name!r}: b", self.b, -MAX_COORD_M, MAX_COORD_M, unit="m")
        if np.hypot(self.a[0] - self.b[0], self.a[1] - self.b[1]) < MIN_LINE_M:
            raise ValueError(f"line {self.name!r}: a and b are less than {MIN_LINE_M} m apart; a line needs length")


@dataclass(frozen=True, slots=True)
class GeometryConfig:
    # 3x3 homography taking a person's foot point in source-image pixels to ground metres.
    homography: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    zones: tuple[ZoneConfig, ...] = ()
    lines: tuple[LineConfig, ...] = ()
    # A crossing counts when a track goes from beyond this many metres on one side of a line to beyond it on
    # the other (hysteresis: a track jittering on the line counts nothing); the cloud's rule on records too.
    count_band_m: float = 0.5
    # ... and only once the track has held the new side this many seconds (a swing back within it cancels the
    # crossing): 2 * count_band_m at a walker's top speed of 2 m/s, so no walker's return is cancelled (TUNING.md).
    count_hold_s: float = 0.5
    # ... held from the last sighting back within the band (true), not only cancelled by one beyond it on the
    # old side: a box jittering about the line's band after a false excursion never holds the new side.
    count_hold_restart: bool = True
    # A track's ground point as counted: averaged over this many seconds (exponentially, in time), 0: raw. Off
    # by default: it helps at 25-30 fps, costs crossings at 3 fps, and delays every count by about itself.
    count_smooth_s: float = 0.0
    # A track born within this many seconds of another's last sighting, near it (1 m plus 2 m/s of the time
    # between), takes over that track's sides: a walker whose track is lost at the line and born again as
    # another id beyond it counts once. 0: off. (These three: bench/counting_loso.py, bench/COUNTING.md.)
    count_join_s: float = 2.0
    # The source image's [width, height] the homography was calibrated on; [0, 0]: not stated (then the
    # homography is checked on a 1000-pixel square). The camera's frames must have this size when stated.
    image_size: tuple[int, int] = (0, 0)

    def validate(self) -> None:
        if self.image_size != (0, 0):
            for i, v in enumerate(self.image_size):
                whole(f"image_size[{i}]", v, 16, 16384, unit="pixels")
        h = np.asarray(self.homography, dtype=np.float64)
        if h.shape != (3, 3) or not np.all(np.isfinite(h)) or np.abs(h).max() > 1e12:
            raise ValueError("homography: must be 3 rows of 3 finite numbers (each within 1e12)")
        cond = _conditioning(h, self.image_size if self.image_size != (0, 0) else (1000, 1000))
        if not cond < MAX_CONDITION:
            raise ValueError(f"homography: matrix is singular or nearly so (condition {cond:.3g}, at most "
                             f"{MAX_CONDITION:g} allowed); calibrate it with `umbra calibrate`")
        number("count_band_m", self.count_band_m, 0, 10, unit="m")
        number("count_hold_s", self.count_hold_s, 0, 10, unit="s")
        number("count_smooth_s", self.count_smooth_s, 0, 10, unit="s")
        number("count_join_s", self.count_join_s, 0, 60, unit="s")
        if not isinstance(self.count_hold_restart, bool):
            raise ValueError(f"count_hold_restart: must be true or false, not {self.count_hold_restart!r}")
        names = [z.name for z in self.zones]
        if len(set(names)) != len(names):
            raise ValueError("zones: zone names must be unique")
        for z in self.zones:
            z.validate()
        for ln in self.lines:
            ln.validate()


def _conditioning(h: np.ndarray, size: tuple[int, int]) -> float:
    """The condition number of `h` once the image is scaled to the unit square and the ground rows and the
    projective row each to unit size, so it measures how near singular the map is, not its units."""
    m = h @ np.diag([float(size[0]), float(size[1]), 1.0])
    ground, proj = float(np.abs(m[:2]).max()), float(np.abs(m[2]).max())
    if ground == 0 or proj == 0:
        return float("inf")
    m = m / np.array([[ground], [ground], [proj]])
    with np.errstate(all="ignore"):
        cond = float(np.linalg.cond(m))
    return cond if np.isfinite(cond) else float("inf")


def _self_crossing(pts: np.ndarray) -> tuple[int, int] | None:
    """The first pair of non-adjacent polygon edges that touch or cross, or None for a simple polygon."""
    n = len(pts)
    for i in range(n):
        a, b = pts[i], pts[(i + 1) % n]
        for j in range(i + 1, n):
            if j == i or (j + 1) % n == i or j == (i + 1) % n:
                continue
            if _segments_touch(a, b, pts[j], pts[(j + 1) % n]):
                return i, j
    return None


def _segments_touch(p: np.ndarray, q: np.ndarray, r: np.ndarray, s: np.ndarray) -> bool:
    def orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    d1, d2, d3, d4 = orient(r, s, p), orient(r, s, q), orient(p, q, r), orient(p, q, s)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and 0 not in (d1, d2, d3, d4):
        return True

    def on(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: float) -> bool:
        return d == 0 and min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    return on(r, s, p, d1) or on(r, s, q, d2) or on(p, q, r, d3) or on(p, q, s, d4)


@dataclass(frozen=True, slots=True)
class QuantizeConfig:
    grid_m: float = 0.5
    time_bucket_s: int = 5
    size_edges_m: tuple[float, float] = (1.3, 2.1)  # apparent height: S below the first, L above the second
    min_speed_mps: float = 0.3  # slower than this, heading is None

    def validate(self) -> None:
        number("grid_m", self.grid_m, 0.1, 100, unit="m")
        whole("time_bucket_s", self.time_bucket_s, 1, 3600, unit="s")
        numbers("size_edges_m", self.size_edges_m, 0, 10, lo_open=True, unit="m")
        lo, hi = self.size_edges_m
        if not lo < hi:
            raise ValueError("size_edges_m: needs two increasing positive heights in metres, e.g. [1.3, 2.1]")
        number("min_speed_mps", self.min_speed_mps, 0, 50, unit="m/s")


@dataclass(frozen=True, slots=True)
class CameraConfig:
    kind: Literal["pi", "video"] = "pi"
    source: str = ""  # video file or image folder (kind = "video")
    fps: float = 0.0  # 0: the source's own rate
    realtime: bool = False  # video only: pace frames at their rate instead of as fast as asked
    main_size: tuple[int, int] = (640, 480)
    stall_timeout_s: float = 2.0

    def validate(self) -> None:
        if self.kind == "video" and not self.source:
            raise ValueError('source: a video camera needs a video file or image folder, e.g. "data/vtest.avi"')
        number("fps", self.fps, 0.1, 240, zero=True, unit="frames per second (0: the source's own rate)")
        for i, v in enumerate(self.main_size):
            whole(f"main_size[{i}]", v, 16, 8192, unit="pixels")
        number("stall_timeout_s", self.stall_timeout_s, 0, 600, lo_open=True, unit="s")


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    kind: Literal["tflite", "scripted"] = "tflite"
    model: str = "ssd_mobilenet_v1_coco_quant"
    edgetpu: Literal["auto", "on", "off"] = "auto"
    tiles: tuple[int, int] = (2, 2)
    overlap: float = 0.15
    score_threshold: float = 0.3
    threads: int = 2
    ground_truth: str = ""  # scripted only: a MOTChallenge gt.txt to replay
    # Where inference is spent (firmware.sensing.gating): "tiles" runs every tile every frame; "motion" runs
    # regions (tile-sized) around motion on the low-res stream and around tracked people's predicted boxes,
    # at most max_invokes a frame, and sweeps every tile (spread over frames) at least every sweep_s while
    # anyone is tracked, every idle_sweep_s (but never more often than sweep_s) while no one is.
    gating: Literal["tiles", "motion"] = "tiles"
    max_invokes: int = 6  # the budget of detector invokes per frame (gating = "motion")
    sweep_s: float = 10.0  # a full sweep of the tiles at least this often, so no one standing still is lost
    idle_sweep_s: float = 60.0  # the same on an empty scene (no tracks): motion regions find who walks in
    region_grow: float = 0.3  # a tracked person's predicted box grows by this share of its size on each side
    motion_threshold: int = 20  # grey-level change (0-255) from the running background counted as motion
    motion_min_area: float = 0.0002  # least share of the frame a motion blob covers to count
    motion_alpha: float = 0.1  # weight of each new frame in the running background

    def validate(self) -> None:
        if not (1 <= self.tiles[0] <= 8 and 1 <= self.tiles[1] <= 8):
            raise ValueError("tiles: each of [nx, ny] must be 1 to 8")
        self._validate_gating()
        number("overlap", self.overlap, 0, 0.5, hi_open=True)
        number("score_threshold", self.score_threshold, 0, 1, lo_open=True, hi_open=True)
        if not 1 <= self.threads <= 16:
            raise ValueError("threads: must be 1 to 16")
        if self.kind == "scripted" and not self.ground_truth:
            raise ValueError('ground_truth: a scripted detector needs a gt.txt to replay')

    def _validate_gating(self) -> None:
        if self.gating not in ("tiles", "motion"):
            raise ValueError(f'gating: must be "tiles" or "motion", got {self.gating!r}')
        if not 1 <= self.max_invokes <= 64:
            raise ValueError(f"max_invokes: must be 1 to 64, got {self.max_invokes}")
        if not 0.5 <= self.sweep_s <= 600:
            raise ValueError(f"sweep_s: must be 0.5 to 600 seconds, got {self.sweep_s}")
        number("idle_sweep_s", self.idle_sweep_s, 0.5, 3600, unit="s")
        if not 0 <= self.region_grow <= 2:
            raise ValueError(f"region_grow: must be 0 to 2 (a share of the box's size), got {self.region_grow}")
        if not 1 <= self.motion_threshold <= 254:
            raise ValueError(f"motion_threshold: must be 1 to 254 grey levels, got {self.motion_threshold}")
        if not 0 <= self.motion_min_area < 0.5:
            raise ValueError(f"motion_min_area: must be at least 0 and below 0.5, got {self.motion_min_area}")
        if not 0 < self.motion_alpha <= 1:
            raise ValueError(f"motion_alpha: must be above 0 and at most 1, got {self.motion_alpha}")


@dataclass(frozen=True, slots=True)
class PseudonymConfig:
    rotate_s: float = 3600.0

    def validate(self) -> None:
        number("rotate_s", self.rotate_s, 60, 86400, unit="s")

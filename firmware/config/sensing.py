"""Config sections of the sensing path: camera, detector, loop, tracker, geometry, quantizer, pseudonym."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True, slots=True)
class LoopConfig:
    detect_hz: float = 10.0
    emit_hz: float = 2.0
    min_score: float = 0.1  # detections below this never reach the tracker
    reopen_backoff_s: tuple[float, float] = (0.5, 30.0)  # first and largest wait before reopening a camera

    def validate(self) -> None:
        if not 0.1 <= self.detect_hz <= 120:
            raise ValueError(f"detect_hz: {self.detect_hz} is outside 0.1 to 120")
        if not 0 < self.emit_hz <= 2.0:
            raise ValueError(f"emit_hz: {self.emit_hz} must be above 0 and at most 2 (records per track per second)")
        if self.emit_hz > self.detect_hz:
            raise ValueError("emit_hz: cannot exceed detect_hz")
        lo, hi = self.reopen_backoff_s
        if not 0 < lo <= hi:
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

    def validate(self) -> None:
        for name in ("high_score", "low_score", "new_track_score", "match_iou", "low_match_iou",
                     "tentative_match_iou", "camera_motion"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}: must be between 0 and 1, got {v}")
        if self.low_score > self.high_score:
            raise ValueError(f"low_score: must not exceed high_score ({self.high_score}), got {self.low_score}")
        if self.min_hits < 1:
            raise ValueError(f"min_hits: must be 1 or more, got {self.min_hits}")
        if self.max_lost_s <= 0:
            raise ValueError(f"max_lost_s: must be positive, got {self.max_lost_s}")
        for name in ("coast_s", "direction_weight", "heading_sure", "refound_after_s", "lag_sigma"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must not be negative, got {getattr(self, name)}")
        for name in ("pos_noise", "vel_noise", "meas_noise", "birth_speed"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive")
        if self.lag_fade < 1:
            raise ValueError(f"lag_fade: must be 1 or more, got {self.lag_fade}")


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    name: str
    polygon: tuple[tuple[float, float], ...]  # ground-plane vertices in metres

    def validate(self) -> None:
        if len(self.polygon) < 3:
            raise ValueError(f"zone {self.name!r}: polygon needs at least 3 points, has {len(self.polygon)}")


@dataclass(frozen=True, slots=True)
class LineConfig:
    """A count line from `a` to `b` in metres. Crossing from its right side to its left (looking from a to
    b) counts as direction "+", the other way "-"."""

    name: str
    a: tuple[float, float]
    b: tuple[float, float]

    def validate(self) -> None:
        if self.a == self.b:
            raise ValueError(f"line {self.name!r}: a and b are the same point")


@dataclass(frozen=True, slots=True)
class GeometryConfig:
    # 3x3 homography taking a person's foot point in source-image pixels to ground metres.
    homography: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    zones: tuple[ZoneConfig, ...] = ()
    lines: tuple[LineConfig, ...] = ()

    def validate(self) -> None:
        h = np.asarray(self.homography, dtype=np.float64)
        if h.shape != (3, 3) or not np.all(np.isfinite(h)):
            raise ValueError("homography: must be 3 rows of 3 finite numbers")
        if abs(np.linalg.det(h)) < 1e-12:
            raise ValueError("homography: matrix is singular; calibrate it with `umbra calibrate`")
        names = [z.name for z in self.zones]
        if len(set(names)) != len(names):
            raise ValueError("zones: zone names must be unique")
        for z in self.zones:
            z.validate()
        for ln in self.lines:
            ln.validate()


@dataclass(frozen=True, slots=True)
class QuantizeConfig:
    grid_m: float = 0.5
    time_bucket_s: int = 5
    size_edges_m: tuple[float, float] = (1.3, 2.1)  # apparent height: S below the first, L above the second
    min_speed_mps: float = 0.3  # slower than this, heading is None

    def validate(self) -> None:
        if not 0.1 <= self.grid_m <= 100:
            raise ValueError(f"grid_m: {self.grid_m} is outside 0.1 to 100 metres")
        if not 1 <= self.time_bucket_s <= 3600:
            raise ValueError(f"time_bucket_s: {self.time_bucket_s} is outside 1 to 3600 seconds")
        lo, hi = self.size_edges_m
        if not 0 < lo < hi:
            raise ValueError("size_edges_m: needs two increasing positive heights in metres, e.g. [1.3, 2.1]")
        if self.min_speed_mps < 0:
            raise ValueError("min_speed_mps: must be zero or more")


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
        if self.fps < 0:
            raise ValueError("fps: must be 0 (the source's own rate) or positive")
        if self.stall_timeout_s <= 0:
            raise ValueError("stall_timeout_s: must be positive")


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
    # at most max_invokes a frame, and sweeps every tile (spread over frames) at least every sweep_s.
    gating: Literal["tiles", "motion"] = "tiles"
    max_invokes: int = 6  # the budget of detector invokes per frame (gating = "motion")
    sweep_s: float = 10.0  # a full sweep of the tiles at least this often, so no one standing still is lost
    region_grow: float = 0.3  # a tracked person's predicted box grows by this share of its size on each side
    motion_threshold: int = 20  # grey-level change (0-255) from the running background counted as motion
    motion_min_area: float = 0.0002  # least share of the frame a motion blob covers to count
    motion_alpha: float = 0.1  # weight of each new frame in the running background

    def validate(self) -> None:
        if not (1 <= self.tiles[0] <= 8 and 1 <= self.tiles[1] <= 8):
            raise ValueError("tiles: each of [nx, ny] must be 1 to 8")
        self._validate_gating()
        if not 0 <= self.overlap < 0.5:
            raise ValueError("overlap: must be at least 0 and below 0.5")
        if not 0 < self.score_threshold < 1:
            raise ValueError("score_threshold: must be between 0 and 1")
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
        if not 60 <= self.rotate_s <= 86400:
            raise ValueError(f"rotate_s: {self.rotate_s} is outside 60 to 86400 seconds")

"""Multi-object tracker: a constant-velocity Kalman filter per track and optimal assignment, with ByteTrack's
second pass that lets low-score detections keep existing tracks alive (Zhang et al., ECCV 2022).

Time-aware: `update()` takes the seconds since the previous call, so the filter behaves the same at 7 Hz as at
30 Hz and through dropped frames. Deterministic (no randomness; ties broken by the assignment solver's fixed
order) and free of global state: ids come from the instance's own counter.

Boxes are pixels, xyxy. State per track: centre x, centre y, width, height and their rates (per second).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

_TENTATIVE, _TRACKED, _LOST = 0, 1, 2


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    high_score: float = 0.5  # detections at or above this start the first pass and may start tracks
    low_score: float = 0.1  # detections between low and high only extend tracks (second pass)
    new_track_score: float = 0.7  # an unmatched detection must score this to start a track
    match_iou: float = 0.1  # first pass: least IoU (after score fusion) to match
    low_match_iou: float = 0.5  # second pass: least IoU for a low-score detection
    tentative_match_iou: float = 0.3  # a newborn track's second sighting
    min_hits: int = 2  # sightings before a track is confirmed and reported
    max_lost_s: float = 1.5  # a track unseen this long has ended
    fuse_score: bool = True  # weigh IoU by detection score in the first pass (ByteTrack's MOT17 setting)
    pos_noise: float = 0.1  # process noise, position, as a share of box height per sqrt(second)
    vel_noise: float = 0.1  # process noise, velocity, as a share of box height per second per sqrt(second)
    meas_noise: float = 0.05  # measurement noise as a share of box height

    def validate(self) -> None:
        for name in ("high_score", "low_score", "new_track_score", "match_iou", "low_match_iou",
                     "tentative_match_iou"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}: must be between 0 and 1, got {v}")
        if self.low_score > self.high_score:
            raise ValueError(f"low_score: must not exceed high_score ({self.high_score}), got {self.low_score}")
        if self.min_hits < 1:
            raise ValueError(f"min_hits: must be 1 or more, got {self.min_hits}")
        if self.max_lost_s <= 0:
            raise ValueError(f"max_lost_s: must be positive, got {self.max_lost_s}")
        for name in ("pos_noise", "vel_noise", "meas_noise"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive")


@dataclass(frozen=True, slots=True)
class Track:
    """A confirmed track as the tracker reports it: pixels, xyxy; `velocity` is the foot point's (bottom
    centre's) velocity in pixels per second."""

    track_id: int
    box: tuple[float, float, float, float]
    score: float
    velocity: tuple[float, float]
    age_s: float
    hits: int


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N,4 xyxy) with every box in `b` (M,4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def assign(similarity: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal one-to-one matching that maximizes total similarity, keeping only pairs at or above
    `threshold`. Returns (matched row/col pairs (K,2), unmatched rows, unmatched cols)."""
    n, m = similarity.shape
    if n == 0 or m == 0:
        return np.zeros((0, 2), np.int64), np.arange(n), np.arange(m)
    cost = np.where(similarity >= threshold, 1.0 - similarity, 1e6)
    rows, cols = linear_sum_assignment(cost)
    keep = cost[rows, cols] < 1e6
    pairs = np.column_stack((rows[keep], cols[keep])).astype(np.int64)
    return pairs, np.setdiff1d(np.arange(n), pairs[:, 0]), np.setdiff1d(np.arange(m), pairs[:, 1])


def _to_xywh(boxes: np.ndarray) -> np.ndarray:
    wh = boxes[:, 2:] - boxes[:, :2]
    return np.hstack((boxes[:, :2] + wh / 2, wh))


def _to_xyxy(state: np.ndarray) -> np.ndarray:
    c, wh = state[:, :2], np.maximum(state[:, 2:4], 1.0)
    return np.hstack((c - wh / 2, c + wh / 2))


class Tracker:
    """`update(boxes, scores, dt)` -> the confirmed tracks seen this tick. `ended()` -> ids of tracks that
    ended since the last call (for dwell times)."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.config.validate()
        self._next_id = 1
        self._x = np.zeros((0, 8))  # cx, cy, w, h, vcx, vcy, vw, vh
        self._p = np.zeros((0, 8, 8))
        self._ids = np.zeros(0, np.int64)
        self._state = np.zeros(0, np.int8)
        self._hits = np.zeros(0, np.int64)
        self._age = np.zeros(0)
        self._unseen = np.zeros(0)  # seconds since last matched
        self._score = np.zeros(0)
        self._ended: list[int] = []

    def __len__(self) -> int:
        return len(self._ids)

    def ended(self) -> list[int]:
        out, self._ended = self._ended, []
        return out

    def update(self, boxes: np.ndarray, scores: np.ndarray, dt: float) -> list[Track]:
        cfg = self.config
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        ok = (scores >= cfg.low_score) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores = boxes[ok], scores[ok]
        self._predict(max(dt, 0.0))
        matched = np.zeros(len(self._ids), bool)
        high = np.flatnonzero(scores >= cfg.high_score)
        low = np.flatnonzero(scores < cfg.high_score)
        predicted = _to_xyxy(self._x)

        # First pass: high-score detections against established tracks (tracked and lost).
        est = np.flatnonzero(self._state != _TENTATIVE)
        sim = iou_matrix(predicted[est], boxes[high])
        if cfg.fuse_score and sim.size:
            sim = sim * scores[high][None, :]
        pairs, left_t, left_d = assign(sim, cfg.match_iou)
        self._correct(est[pairs[:, 0]], boxes[high[pairs[:, 1]]], scores[high[pairs[:, 1]]])
        matched[est[pairs[:, 0]]] = True
        unmatched_high = high[left_d]

        # Second pass: low-score detections keep currently tracked (not lost) tracks alive.
        rest = est[left_t]
        rest = rest[self._state[rest] == _TRACKED]
        pairs, _, _ = assign(iou_matrix(predicted[rest], boxes[low]), cfg.low_match_iou)
        self._correct(rest[pairs[:, 0]], boxes[low[pairs[:, 1]]], scores[low[pairs[:, 1]]])
        matched[rest[pairs[:, 0]]] = True

        # Newborn tracks take their second sighting from what is left of the high-score detections.
        tent = np.flatnonzero(self._state == _TENTATIVE)
        pairs, _, left_d = assign(iou_matrix(predicted[tent], boxes[unmatched_high]), cfg.tentative_match_iou)
        self._correct(tent[pairs[:, 0]], boxes[unmatched_high[pairs[:, 1]]], scores[unmatched_high[pairs[:, 1]]])
        matched[tent[pairs[:, 0]]] = True
        unmatched_high = unmatched_high[left_d]

        self._settle(matched, dt)
        fresh = unmatched_high[scores[unmatched_high] >= cfg.new_track_score]
        self._birth(boxes[fresh], scores[fresh])
        return self._report()

    # -- internals -------------------------------------------------------------------------------------

    def _predict(self, dt: float) -> None:
        if not len(self._ids) or dt == 0.0:
            return
        cfg = self.config
        f = np.eye(8)
        f[range(4), range(4, 8)] = dt
        h = np.maximum(self._x[:, 3], 1.0)
        q_pos = (cfg.pos_noise * h) ** 2 * dt
        q_vel = (cfg.vel_noise * h) ** 2 * dt
        q = np.zeros((len(h), 8, 8))
        q[:, range(4), range(4)] = q_pos[:, None]
        q[:, range(4, 8), range(4, 8)] = q_vel[:, None]
        self._x = self._x @ f.T
        self._p = f @ self._p @ f.T + q
        self._age += dt
        self._unseen += dt

    def _correct(self, idx: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> None:
        if not len(idx):
            return
        z = _to_xywh(boxes)
        x, p = self._x[idx], self._p[idx]
        r_std = self.config.meas_noise * np.maximum(z[:, 3], 1.0)
        r = np.eye(4)[None] * (r_std**2)[:, None, None]
        s = p[:, :4, :4] + r
        k = np.linalg.solve(s, p[:, :4, :]).transpose(0, 2, 1)  # (n, 8, 4): P H^T S^-1, S symmetric
        innov = z - x[:, :4]
        self._x[idx] = x + np.einsum("nij,nj->ni", k, innov)
        self._p[idx] = p - k @ p[:, :4, :]
        self._hits[idx] += 1
        self._unseen[idx] = 0.0
        self._score[idx] = scores

    def _settle(self, matched: np.ndarray, dt: float) -> None:
        cfg = self.config
        st = self._state
        st[matched & (st == _LOST)] = _TRACKED
        st[matched & (st == _TENTATIVE) & (self._hits >= cfg.min_hits)] = _TRACKED
        st[~matched & (st == _TRACKED)] = _LOST
        dead = (~matched & (st == _TENTATIVE)) | ((st == _LOST) & (self._unseen > cfg.max_lost_s))
        if dead.any():
            self._ended.extend(int(i) for i in self._ids[dead & (self._hits >= cfg.min_hits)])
            self._keep(~dead)

    def _keep(self, keep: np.ndarray) -> None:
        for name in ("_x", "_p", "_ids", "_state", "_hits", "_age", "_unseen", "_score"):
            setattr(self, name, getattr(self, name)[keep])

    def _birth(self, boxes: np.ndarray, scores: np.ndarray) -> None:
        n = len(boxes)
        if not n:
            return
        z = _to_xywh(boxes)
        x = np.hstack((z, np.zeros((n, 4))))
        h = np.maximum(z[:, 3], 1.0)
        p = np.zeros((n, 8, 8))
        p[:, range(4), range(4)] = ((2 * self.config.meas_noise * h) ** 2)[:, None]
        p[:, range(4, 8), range(4, 8)] = ((0.5 * h) ** 2)[:, None]  # a walker's speed: up to ~a height/s
        self._x = np.vstack((self._x, x))
        self._p = np.concatenate((self._p, p))
        self._ids = np.concatenate((self._ids, np.arange(self._next_id, self._next_id + n)))
        self._next_id += n
        first = self.config.min_hits <= 1
        self._state = np.concatenate((self._state, np.full(n, _TRACKED if first else _TENTATIVE, np.int8)))
        self._hits = np.concatenate((self._hits, np.ones(n, np.int64)))
        self._age = np.concatenate((self._age, np.zeros(n)))
        self._unseen = np.concatenate((self._unseen, np.zeros(n)))
        self._score = np.concatenate((self._score, scores))

    def _report(self) -> list[Track]:
        live = np.flatnonzero(self._state == _TRACKED)
        boxes = _to_xyxy(self._x[live])
        v = self._x[live, 4:6].copy()
        v[:, 1] += self._x[live, 7] / 2  # the foot point moves with the centre plus half the height's rate
        return [
            Track(
                int(self._ids[i]),
                (float(boxes[j, 0]), float(boxes[j, 1]), float(boxes[j, 2]), float(boxes[j, 3])),
                float(self._score[i]),
                (float(v[j, 0]), float(v[j, 1])),
                float(self._age[i]),
                int(self._hits[i]),
            )
            for j, i in enumerate(live)
        ]

"""Multi-object tracker: a constant-velocity Kalman filter per track and optimal assignment, with ByteTrack's
second pass that lets low-score detections keep existing tracks alive (Zhang et al., ECCV 2022). Where pairs
conflict, a track's heading helps decide (OC-SORT's momentum), and a track found after a long gap takes the
velocity of the way it went unseen (OC-SORT's re-update). A track
seen on the last tick moves at constant velocity in the world, not the image (`perspective`: a box that grows
as its person comes closer speeds up as it grows); one whose sightings fall off the same side of its prediction
twice running catches up faster (`lag_sigma`, `lag_fade`); a lost one is still reported at its prediction for
`coast_s` while that is in the frame; `camera_motion` (off) takes the camera's own motion out of the
predictions. Off by default: `recover_sigma` (a lost track left unmatched takes a detection within a
Mahalanobis gate of its prediction) and `imm_switch_hz` (the centre as an IMM of walking and standing,
firmware.sensing.imm).

Time-aware: `update()` takes the seconds since the previous call, so the filter behaves the same at 7 Hz as at
30 Hz and through dropped frames. Deterministic (no randomness; ties broken by the assignment solver's fixed
order) and free of global state: ids come from the instance's own counter.

Boxes are pixels, xyxy. State per track: centre x, centre y, width, height and their rates (per second).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from firmware.config.sensing import TrackerConfig
from firmware.sensing import camera_motion, imm
from firmware.sensing.score_scale import ScoreScale

_TENTATIVE, _TRACKED, _LOST = 0, 1, 2
# Columns of the per-track float array.
_POS, _VEL, _P11, _P12, _P22 = slice(0, 4), slice(4, 8), slice(8, 12), slice(12, 16), slice(16, 20)
_AGE, _UNSEEN, _SCORE, _HITS = 20, 21, 22, 23
_ONE = 24  # a constant 1, so the prediction's clocks are part of its product
_LAG = 25  # the last sighting's horizontal innovation, in deviations (0 after a gap; see _lag)
_CAMERA_MIN_PX = 0.25  # a camera-motion correction under this many pixels (and 0.1% in size) is left out
_COLS = 26
_SCALE_TICKS = 8  # ticks with matches between two updates of the learned score thresholds
_FEW_ROWS = 6  # a correction of at most this many tracks runs in plain floats (see _correct_rows)
_FADE_COLS = np.array([8, 12, 16])  # the horizontal centre's p11, p12 and p22 (see _lag)
_HEADING_COLS = np.array([0, 1, 4, 5, 16, 17, _UNSEEN])  # centre, its velocity and variances, time unseen
_GROW_COLS = np.array([3, 7, 19, _UNSEEN])  # height, its rate and the rate's variance, time unseen
_GROW_M = np.zeros((3, _COLS))  # (1, 1/a, 1/a^2) -> a row's multipliers (see _perspective)
_GROW_M[0] = 1.0
_GROW_M[0, _VEL] = _GROW_M[0, _P12] = _GROW_M[0, _P22] = 0.0
_GROW_M[1, _VEL] = _GROW_M[1, _P12] = _GROW_M[2, _P22] = 1.0
# The IMM's models of the box centre (imm_switch_hz): walking (constant velocity) and standing; as (a, b) of
# x' = x + a v, v' = b v, the walking one's a being dt.
_IMM_WALK_A, _IMM_B = np.array([1.0, 0.0]), np.array([1.0, 0.0])
_IMM_PRIOR = np.array([1.0, 0.0])  # a newborn's model probabilities: walking
_IMM_SURE_HITS = 4  # sightings before the likelihoods move the model probabilities (see _imm_correct)
_IMM_COLS = np.array([[0, 4], [1, 5]])  # the centre's (position, velocity) columns, x then y
_IMM_P_COLS = np.array([[8, 12, 16], [9, 13, 17]])  # and their covariance terms (p11, p12, p22)
_RECOVER_HEIGHT = math.log(1.5)  # a recovered track's height is within this factor (log) of its detection's


def process_noise(cfg: TrackerConfig, dt: float) -> tuple[float, float, float]:
    """The process noise (q11, q12, q22) a (position, velocity) pair gains over `dt` seconds, per squared box
    height. With `exact_noise`: the exact discretization of a position random walk (`pos_noise`) plus a velocity
    random walk (`vel_noise`, white acceleration): q11 = qp dt + qv dt^3 / 3, q12 = qv dt^2 / 2, q22 = qv dt, so
    one step of 4 dt gives the covariance four steps of dt give (the velocity's noise reaches the position within
    the step, not only from the next one on); the default. Without: the diagonal (qp dt, 0, qv dt)."""
    qp, qv = cfg.pos_noise**2, cfg.vel_noise**2
    if not cfg.exact_noise:
        return qp * dt, 0.0, qv * dt
    return qp * dt + qv * dt**3 / 3.0, qv * dt * dt / 2.0, qv * dt


def _const(value: float, dtype: type = np.float64) -> np.ndarray:
    """`value` as a read-only 0-d array: a ufunc converts a Python number argument on every call, a fifth of its
    cost on the few boxes of a tick (so the hot paths take constants and thresholds as these)."""
    a: np.ndarray = np.array(value, dtype)
    a.flags.writeable = False
    return a


_ZERO, _ONE_PX, _TINY, _TENTATIVE_I8 = _const(0.0), _const(1.0), _const(1e-12), _const(_TENTATIVE, np.int8)
_LOST_I8 = _const(_LOST, np.int8)


class _Limits(NamedTuple):
    """The config's thresholds as read-only 0-d arrays (see _const)."""

    high_score: np.ndarray
    match_iou: np.ndarray
    low_match_iou: np.ndarray
    tentative_match_iou: np.ndarray
    new_track_score: np.ndarray
    min_hits: np.ndarray
    max_lost_s: np.ndarray


class Track(NamedTuple):
    """A confirmed track as the tracker reports it: pixels, xyxy; `velocity` is the foot point's (bottom
    centre's) velocity in pixels per second."""

    track_id: int
    box: tuple[float, float, float, float]
    score: float
    velocity: tuple[float, float]
    age_s: float
    hits: int
    unseen_s: float = 0.0  # 0 when seen this tick; a coasting track's time since (its box is the prediction)


def iou_matrix(a: np.ndarray, b: np.ndarray, area_a: np.ndarray | None = None,
               area_b: np.ndarray | None = None) -> np.ndarray:
    """IoU of every box in `a` (N,4 xyxy) with every box in `b` (M,4); their areas when the caller has them."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.maximum(rb - lt, _ZERO)
    inter = wh[..., 0] * wh[..., 1]
    if area_a is None:
        area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    if area_b is None:
        area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b
    union -= inter
    np.maximum(union, _TINY, out=union)  # boxes without area meet nothing
    inter /= union
    return inter


def buffered_iou(a: np.ndarray, b: np.ndarray, wh_a: np.ndarray, wh_b: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N,4 xyxy; sizes `wh_a`) with every box in `b` (M,4; `wh_b`), both grown on each
    side by row i's `margin` (N,2: x, y) (Yang et al.'s buffered IoU, WACV 2023, with a buffer per track): a
    prediction that is unsure where its person went overlaps the detections within its uncertainty, where
    plain IoU would be zero (a slow detector, a track unseen a while)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    m = margin[:, None, :]
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    lt -= m
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    rb += m
    wh = np.maximum(rb - lt, _ZERO)
    inter = wh[..., 0] * wh[..., 1]
    m2 = 2.0 * margin
    area_a = (wh_a[:, 0] + m2[:, 0]) * (wh_a[:, 1] + m2[:, 1])
    union = (wh_b[None, :, 0] + m2[:, None, 0]) * (wh_b[None, :, 1] + m2[:, None, 1])
    union += area_a[:, None]
    union -= inter
    np.maximum(union, _TINY, out=union)
    inter /= union
    return inter


_NONE = np.zeros(0, np.int64)  # no matches


def assign(similarity: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching that maximizes total similarity, keeping only pairs at or above
    `threshold`. Returns the matched rows and columns, each shape (K,)."""
    return _match(similarity, similarity >= threshold)


def _match(similarity: np.ndarray, ok: np.ndarray,
           bonus: Callable[[np.ndarray, np.ndarray], list[float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`assign` over the pairs `ok` allows; where pairs conflict, `bonus(rows, cols)`, when given, adds to the
    similarity of the allowed pairs (rows[k], cols[k]) (it decides between allowed pairs, it allows none)."""
    n = np.count_nonzero(ok)  # (count_nonzero: a quarter of any()'s cost on small arrays)
    if not n:
        return _NONE, _NONE
    rows, cols = ok.nonzero()
    if n == 1 or len(set(rows.tolist())) == n == len(set(cols.tolist())):
        return rows, cols  # no two pairs share a row or a column: the optimum takes them all
    cost = np.where(ok, 1.0 - similarity, 1e6)
    if bonus is not None:
        cost[rows, cols] -= bonus(rows, cols)
    rows, cols = linear_sum_assignment(cost)
    keep = ok[rows, cols]
    if np.count_nonzero(keep) == len(keep):
        return rows, cols
    return rows[keep], cols[keep]


# Box conversions as products (rows: from, columns: to): xyxy -> centre, size and back.
_XYWH = np.array([[0.5, 0.0, -1.0, 0.0], [0.0, 0.5, 0.0, -1.0], [0.5, 0.0, 1.0, 0.0], [0.0, 0.5, 0.0, 1.0]])
_XYXY = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0], [-0.5, 0.0, 0.5, 0.0], [0.0, -0.5, 0.0, 0.5]])


def _inside(cx: float, cy: float, hw: float, hh: float, frame: tuple[float, float]) -> float:
    """The share of the box (centre, half width and height) inside a frame (width, height) at the origin."""
    w = min(cx + hw, frame[0]) - max(cx - hw, 0.0)
    h = min(cy + hh, frame[1]) - max(cy - hh, 0.0)
    return max(w, 0.0) * max(h, 0.0) / (4.0 * hw * hh)


def _lag_test(last: float, innov: float, s: float, unseen: float, next_tick: float,
              sigma: float) -> tuple[float, bool]:
    """One track's lag test (Tracker._lag) on its horizontal innovation `innov` of variance `s`: this sighting's
    innovation in deviations (0 after a gap: there is no run to continue), and whether it and the `last` one
    both fell off the same side by more than `sigma` deviations."""
    nu = innov / math.sqrt(s) if unseen <= next_tick else 0.0
    return nu, last * nu > 0.0 and min(abs(last), abs(nu)) > sigma


Bonus = Callable[[np.ndarray, np.ndarray], list[float]]


class _Pairs:
    """The pairs one tick's passes have matched so far, and the tracks and detections they used (marked in
    `track_used` and `det_used`)."""

    def __init__(self, iou: np.ndarray, scores: np.ndarray, track_used: np.ndarray, det_used: np.ndarray) -> None:
        self.iou, self.scores, self.track_used, self.det_used = iou, scores, track_used, det_used
        self.t_all: list[np.ndarray] = []
        self.d_all: list[np.ndarray] = []

    def left(self, established: np.ndarray | None) -> np.ndarray:
        """The established tracks not matched yet (every track when none is a newborn)."""
        left = ~self.track_used
        if established is not None:
            left &= established
        return left

    def take(self, t_mask: np.ndarray | None, d_mask: np.ndarray | None, threshold: np.ndarray, fuse: bool = False,
             bonus: Bonus | None = None, over: np.ndarray | None = None) -> None:
        """One pass on the whole matrix (`over`, else the IoU, times the scores with `fuse`), the pairs allowed
        masked (None: all): no index mapping."""
        sim = over if over is not None else self.iou * self.scores if fuse else self.iou
        ok = sim >= threshold
        if t_mask is not None:
            ok &= t_mask[:, None]
        if d_mask is not None:
            ok &= d_mask
        t, d = _match(sim, ok, bonus)
        if len(t):
            self.track_used[t] = True
            self.det_used[d] = True
            self.t_all.append(t)
            self.d_all.append(d)

    def result(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.t_all:
            return None
        if len(self.t_all) == 1:
            return self.t_all[0], self.d_all[0]
        return np.concatenate(self.t_all), np.concatenate(self.d_all)


class Tracker:
    """`update(boxes, scores, dt[, frame_size])` -> the confirmed tracks seen this tick, and those coasting
    (`Track.unseen_s` > 0). `ended()` -> ids of tracks that ended since the last call (for dwell times)."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.config.validate()
        self._next_id = 1
        # One row per track. The motion model is constant velocity per coordinate (cx, cy, w, h) with diagonal
        # noise, so the 8x8 covariance is four independent 2x2 blocks: kept as their three distinct terms.
        self._f = np.zeros((0, _COLS))
        self._ids = np.zeros(0, np.int64)
        self._state = np.zeros(0, np.int8)
        self._ended: list[int] = []
        self._motion_dt = 0.0  # the prediction's matrices, cached for this dt (see _motion); over 0 s: none
        self._motion_m = (np.eye(_COLS), np.zeros(_COLS))
        self._limits = _Limits(*(_const(getattr(self.config, name)) for name in _Limits._fields))
        # The detector's score scale, learned from what confirmed tracks take (see _learn_scores); None: fixed.
        self._scale = ScoreScale(min_samples=self.config.score_samples) if self.config.adaptive_scores else None
        self._scale_buf: list[np.ndarray] = []
        self._frame: tuple[float, float] | None = None  # (width, height), once update() has been told
        # With imm_switch_hz: the centre's models per track (see firmware.sensing.imm), (N, 2, 2, 2) states,
        # (N, 2, 2, 3) covariances, (N, 2) model probabilities; the row's centre columns hold their estimate.
        self._imm_x = np.zeros((0, 2, 2, 2))
        self._imm_p = np.zeros((0, 2, 2, 3))
        self._imm_mu = np.zeros((0, 2))
        self._imm_cbar = np.zeros((0, 2))

    def __len__(self) -> int:
        return len(self._ids)

    def ended(self) -> list[int]:
        out, self._ended = self._ended, []
        return out

    def update(self, boxes: np.ndarray, scores: np.ndarray, dt: float,
               frame_size: tuple[float, float] | None = None) -> list[Track]:
        """`boxes` (N,4 pixels, xyxy) and their `scores`, seen `dt` seconds after the last call; `frame_size`, the
        (width, height) of the image the boxes are in, kept from the last call that gave it: a coasting track whose
        prediction is more than half out of the frame is not reported (the person has left)."""
        cfg = self.config
        if frame_size is not None:
            self._frame = frame_size
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        z = boxes @ _XYWH  # centre and size
        # (One test for the usual case, first in plain floats, cheaper than numpy's minima on a few boxes; these
        # then decide, as before: Python's min() may pass over a NaN, numpy's returns it.)
        if len(z) and (min(z[:, 2:].ravel().tolist()) <= 0 or min(scores.tolist()) < cfg.low_score) and (
                z[:, 2:].min() <= 0 or scores.min() < cfg.low_score):
            ok = z[:, 2] > 0
            ok &= z[:, 3] > 0
            if cfg.low_score > 0:
                ok &= scores >= cfg.low_score
            boxes, scores, z = boxes[ok], scores[ok], z[ok]
        self._predict(max(dt, 0.0))
        track_used = np.zeros(len(self._ids), bool)
        det_used = np.zeros(len(boxes), bool)
        if len(self._ids) and len(boxes):
            pairs = self._associate(boxes, z, scores, track_used, det_used)
            if pairs is not None:
                self._correct(*pairs, z, scores, dt)
                if cfg.imm_switch_hz:
                    self._imm_correct(*pairs, z)
                if self._scale is not None:
                    self._learn_scores(pairs[0], scores[pairs[1]])
        self._settle(track_used)
        fresh = ~det_used & (scores >= self._limits.new_track_score)
        if np.count_nonzero(fresh):
            self._birth(z[fresh], scores[fresh])
        return self._report()

    # -- internals -------------------------------------------------------------------------------------

    def _learn_scores(self, tracks: np.ndarray, scores: np.ndarray) -> None:
        """The scores of detections confirmed tracks took this tick go to the score scale; every few ticks
        (`_SCALE_TICKS`, so the cost stays small) high_score and new_track_score are set to its quantiles, once
        it has enough samples. Both passes' matches count: learning from the first pass alone (scores above
        high_score) would only ever raise the threshold."""
        self._scale_buf.append(scores[self._state[tracks] != _TENTATIVE_I8])
        if len(self._scale_buf) < _SCALE_TICKS:
            return
        assert self._scale is not None
        self._scale.add(np.concatenate(self._scale_buf))
        self._scale_buf = []
        if self._scale.ready:
            cfg = self.config
            high = self._scale.quantile(cfg.high_quantile)
            birth = max(self._scale.quantile(cfg.birth_quantile), high)
            self._limits = self._limits._replace(high_score=_const(high), new_track_score=_const(birth))

    def _associate(self, boxes: np.ndarray, z: np.ndarray, scores: np.ndarray, track_used: np.ndarray,
                   det_used: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """ByteTrack's passes over the predicted tracks and the detections (`boxes`, and `z` as centre and size):
        marks the tracks and detections matched in `track_used` and `det_used` and returns the pairs (tracks,
        detections), None when there are none."""
        cfg, lim = self.config, self._limits
        iou = self._iou(boxes, z)  # every track against every detection, once
        if cfg.camera_motion and self._camera(iou, z):
            iou = self._iou(boxes, z)
        p = _Pairs(iou, scores, track_used, det_used)
        # Where pairs conflict, the established tracks' headings help decide (a newborn's has no weight).
        heading = (lambda r, c: self._heading(z, scores, r, c)) if cfg.direction_weight else None
        # First pass: high-score detections against established tracks (tracked and lost).
        is_high = scores >= lim.high_score
        newborn = self._state == _TENTATIVE_I8
        some_newborn = np.count_nonzero(newborn) > 0
        some_low = np.count_nonzero(is_high) < len(is_high)
        established = ~newborn if some_newborn else None
        p.take(established, is_high if some_low else None, lim.match_iou, cfg.fuse_score, heading)
        # Second pass: low-score detections keep established tracks alive, lost ones too (a person the detector is
        # unsure of is still the person it lost a moment ago).
        if some_low:
            p.take(p.left(established), ~is_high, lim.low_match_iou, False, heading)
        buffered = None
        if cfg.gate_sigma and np.count_nonzero(det_used) < len(det_used):
            buffered = self._buffered_pass(p, boxes, z, established, bool(some_newborn), is_high, heading)
        if cfg.recover_sigma:
            self._recover(p, z, is_high)
        # Newborn tracks take their second sighting from whatever detections are left: a high score started them,
        # so a low one may confirm them. Their speed is unknown, so (unless gate_sigma buffered every track) they
        # match on the IoU buffered by their own prediction's uncertainty (newborn_sigma deviations).
        if some_newborn:
            if buffered is None and cfg.newborn_sigma and np.count_nonzero(det_used) < len(det_used):
                buffered = self._newborn_buffered(newborn, boxes, z)
            p.take(newborn, ~det_used, lim.tentative_match_iou, over=buffered)
        return p.result()

    def _recover(self, p: _Pairs, z: np.ndarray, is_high: np.ndarray) -> None:
        """Lost tracks the passes left take high-score detections left within `recover_sigma` deviations of
        their predicted centre: the squared Mahalanobis distance over the centre's two coordinates on the
        innovation's variance (the prediction's p11 plus the measurement's), so the gate grows with the time
        lost and with the frame interval, where IoU stops meeting a person who walked on. The height must agree
        within a factor 1.5. Pairs closer in that distance win."""
        lost = p.left(None)
        lost &= self._state == _LOST_I8
        dets = is_high & ~p.det_used
        if not np.count_nonzero(lost) or not np.count_nonzero(dets):
            return
        t, d = lost.nonzero()[0], dets.nonzero()[0]
        f, zd = self._f[t], z[d]
        r = np.maximum(zd[:, 3], 1.0) * self.config.meas_noise
        r *= r
        s = f[:, None, 8:10] + r[None, :, None]  # (tracks, detections, x y)
        innov = zd[None, :, :2] - f[:, None, :2]
        d2 = (innov * innov / s).sum(-1)
        gate = self.config.recover_sigma ** 2
        ok = d2 <= gate
        ok &= np.abs(np.log(np.maximum(zd[None, :, 3], 1.0) / np.maximum(f[:, None, 3], 1.0))) <= _RECOVER_HEIGHT
        rows, cols = _match(1.0 - d2 / gate, ok)
        if len(rows):
            ti, di = t[rows], d[cols]
            p.track_used[ti] = True
            p.det_used[di] = True
            p.t_all.append(ti)
            p.d_all.append(di)

    def _newborn_buffered(self, newborn: np.ndarray, boxes: np.ndarray, z: np.ndarray) -> np.ndarray:
        """The newborns' rows of `buffered_iou`, each prediction grown by `newborn_sigma` deviations of its centre
        (the other rows 0: the pass that reads it takes newborns only). A newborn's velocity is its prior
        (`birth_speed` box heights per second), so its deviation grows with the time since its first sighting:
        the gate widens as the detector slows down, where a fixed IoU loses whoever walks out of their own box
        between two frames (a 3 fps detector, a fast walker, a small box)."""
        f = self._f[newborn]
        margin = np.sqrt(f[:, 8:10])
        margin *= self.config.newborn_sigma
        out = np.zeros((len(self._f), len(boxes)))
        out[newborn] = buffered_iou(f[:, _POS] @ _XYXY, boxes, f[:, 2:4], z[:, 2:4], margin)
        return out

    def _buffered_pass(self, p: _Pairs, boxes: np.ndarray, z: np.ndarray, established: np.ndarray | None,
                       some_newborn: bool, is_high: np.ndarray, heading: Bonus | None) -> np.ndarray | None:
        """With gate_sigma, what is left is matched again on the IoU buffered by each prediction's uncertainty:
        established tracks the plain IoU could not place (a slow detector, a track unseen a while) take
        high-score detections, and newborns (whose speed is unknown) take their second sighting. Returns the
        buffered IoU (None when nothing needs it)."""
        left = p.left(established)
        buffered = None
        if some_newborn or np.count_nonzero(left):
            buffered = self._buffered(boxes, z)
        if np.count_nonzero(left):
            p.take(left, is_high & ~p.det_used, self._limits.match_iou, False, heading, buffered)
        return buffered

    def _predict(self, dt: float) -> None:
        if not len(self._ids) or dt == 0.0:
            return
        a, q = self._motion(dt)
        f = self._f
        h2 = np.maximum(f[:, 3:4], _ONE_PX)
        h2 *= h2
        if not self.config.perspective:
            g = f @ a  # state, covariance terms, age and time unseen: one product for the whole row
            g += h2 * q
        else:
            m = self._perspective(dt)
            g = (f * m) @ a
            g += h2 * q
            g *= m
        self._f = g
        if self.config.imm_switch_hz:
            self._imm_predict(dt, h2)

    def _imm_predict(self, dt: float, h2: np.ndarray) -> None:
        """With imm_switch_hz, the centre's prediction is the IMM's (firmware.sensing.imm): the models mixed,
        each predicted (walking at constant velocity, standing with its velocity forgotten; the process noise
        the constant-velocity filter's, per squared box height), and their estimate written to the row (the
        size keeps the row's own prediction)."""
        cfg = self.config
        x0, p0, cbar = imm.mix(self._imm_x, self._imm_p, self._imm_mu, imm.switches(2, cfg.imm_switch_hz, dt))
        # A track missed on the last tick does not switch while unseen: nothing says its person stopped or
        # walked on (the chain's drift towards standing would stall every occluded walker's prediction).
        unseen = self._f[:, _UNSEEN] > 1.5 * dt  # (the clock has already run this tick)
        if np.count_nonzero(unseen):
            x0[unseen], p0[unseen], cbar[unseen] = self._imm_x[unseen], self._imm_p[unseen], self._imm_mu[unseen]
        # (walking: the constant-velocity filter's noise; standing forgets its velocity, so none of the velocity's
        # noise reaches its position: q11 the position's random walk alone, q12 none)
        walk = np.array(process_noise(cfg, dt))
        stand = np.array([cfg.pos_noise**2 * dt, 0.0, walk[2]])
        q = np.stack((walk, stand))[None, :, None, :] * h2[:, :, None, None]
        self._imm_x, self._imm_p = imm.predict(x0, p0, _IMM_WALK_A * dt, _IMM_B, q)
        self._imm_cbar = cbar
        self._imm_mu = cbar  # (a track not seen this tick keeps the predicted probabilities)
        self._imm_write()

    def _imm_write(self) -> None:
        """The IMM's estimate of the centre into the rows."""
        xc, pc = imm.combine(self._imm_x, self._imm_p, self._imm_mu)
        self._f[:, _IMM_COLS] = xc
        self._f[:, _IMM_P_COLS] = pc

    def _imm_correct(self, idx: np.ndarray, det: np.ndarray, z: np.ndarray) -> None:
        """The matched tracks' models take their detections' centres (the measurement noise the filter's);
        their model probabilities follow the likelihoods."""
        zd = z[det]
        r = np.maximum(zd[:, 3], 1.0) * self.config.meas_noise
        r *= r
        x, p, mu = imm.update(self._imm_x[idx], self._imm_p[idx], self._imm_cbar[idx], zd[:, :2],
                              np.repeat(r[:, None], 2, 1))
        # A young track's speed is still its prior's: a walker's first steps fit standing better than a walking
        # model that does not know its speed yet, so its probabilities stay as predicted (walking, from birth).
        young = self._f[idx, _HITS] < _IMM_SURE_HITS
        mu[young] = self._imm_cbar[idx][young]
        self._imm_x[idx], self._imm_p[idx], self._imm_mu[idx] = x, p, mu
        self._imm_write()

    def _perspective(self, dt: float) -> np.ndarray:
        """Constant velocity in the world rather than the image: a person of fixed height moving at constant
        velocity relative to a pinhole camera has cx/h, cy/h, w/h and 1/h linear in time (cx/h is proportional to
        cx Z, linear whatever the principal point). In the image that is, with a = 1 - dt vh / h: position += dt
        velocity / a, velocity /= a^2: a box that grows (people at the roadside seen from a car, a person walking
        up to the camera) speeds up as it grows, where constant image velocity lags. As a product: the rows times
        the returned multipliers (velocity and p12 by 1/a, p22 by 1/a^2) before and after the constant-velocity
        step. The growth rate counts as far as it stands out of its own noise (vh^2 / (vh^2 + var vh)); a lost
        track (unseen on the last tick) keeps constant image velocity; a step at most grows a box 2 times or
        shrinks it to 2/3. In plain floats: a row is a few terms."""
        out = []
        for h, vh, var, unseen in self._f[:, _GROW_COLS].tolist():
            if unseen > 0.0 or vh == 0.0:
                out.append((1.0, 1.0, 1.0))
                continue
            v2 = vh * vh
            a = min(max(1.0 - dt * vh * v2 / ((v2 + var) * max(h, 1.0)), 0.5), 1.5)
            out.append((1.0, 1.0 / a, 1.0 / (a * a)))
        return np.array(out) @ _GROW_M

    def _motion(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """The prediction over `dt` as a matrix on the whole row and the process noise per unit of squared box
        height: row' = row @ a + h^2 q, which is position += dt velocity; p11 += 2 dt p12 + dt^2 p22 + qp h^2 dt;
        p12 += dt p22; p22 += qv h^2 dt; age and time unseen += dt (from the constant column); score and
        sightings stay (the identity: a product on the whole row is cheaper than on a slice of it). Cached for
        the last dt (the loop's period)."""
        if self._motion_dt != dt:
            cfg, n = self.config, _COLS
            a = np.eye(n)
            for k in range(4):
                a[_VEL.start + k, _POS.start + k] = dt
                a[_P12.start + k, _P11.start + k] = 2.0 * dt
                a[_P22.start + k, _P11.start + k] = dt * dt
                a[_P22.start + k, _P12.start + k] = dt
            q = np.zeros(n)
            q[_P11], q[_P12], q[_P22] = process_noise(cfg, dt)
            a[_ONE, _AGE] = a[_ONE, _UNSEEN] = dt
            self._motion_dt, self._motion_m = dt, (a, q)
        return self._motion_m

    def _iou(self, boxes: np.ndarray, z: np.ndarray) -> np.ndarray:
        """IoU of every predicted track box with every detection."""
        f = self._f
        return iou_matrix(f[:, _POS] @ _XYXY, boxes, f[:, 2] * f[:, 3], z[:, 2] * z[:, 3])

    def _buffered(self, boxes: np.ndarray, z: np.ndarray) -> np.ndarray:
        """`buffered_iou` of every predicted track box with every detection, each grown by `gate_sigma`
        deviations of its prediction's centre."""
        f = self._f
        margin = np.sqrt(f[:, 8:10])
        margin *= self.config.gate_sigma
        return buffered_iou(f[:, _POS] @ _XYXY, boxes, f[:, 2:4], z[:, 2:4], margin)

    def _camera(self, iou: np.ndarray, z: np.ndarray) -> bool:
        """Takes the camera's own motion out of the predictions, as far as this tick's detections show it
        (firmware.sensing.camera_motion): each established track is paired with the detection it overlaps most, and the
        pairs' shrunk median shift and size ratio, times `camera_motion`, move and scale every prediction. True
        when the predictions moved (the IoU must be computed again)."""
        d = iou.argmax(1)
        t = (iou[np.arange(len(d)), d] >= camera_motion.PAIR_IOU) & (self._state != _TENTATIVE)
        t = t.nonzero()[0]
        f = self._f
        est = camera_motion.estimate(f[t, :4], z[d[t]])
        if est is None:
            return False
        w = self.config.camera_motion
        sx, sy, scale = w * est[0], w * est[1], w * est[2]
        if abs(sx) + abs(sy) < _CAMERA_MIN_PX and abs(scale) < 1e-3:
            return False
        f[:, 0] += sx
        f[:, 1] += sy
        f[:, 2:4] *= math.exp(scale)
        if self.config.imm_switch_hz:
            self._imm_x[:, :, 0, 0] += sx
            self._imm_x[:, :, 1, 0] += sy
        return True

    def _heading(self, z: np.ndarray, scores: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> list[float]:
        """OC-SORT's momentum term (Cao et al., CVPR 2023) with the filter's velocity for the heading, for the pairs
        of tracks `rows` and detections `cols`: the cosine between a track's heading and the way from where it was
        last seen to the detection, times the detection's score and `direction_weight`. Walkers whose paths
        cross keep their headings; a swap would turn both round. A heading counts as far as the speed stands out
        of its own uncertainty (s^2 / (s^2 + heading_sure var)): a newborn's or a standing person's is noise.
        In plain floats: a conflict involves a few pairs, and numpy's per-call cost would dominate."""
        cfg = self.config
        pairs = self._f[rows[:, None], _HEADING_COLS].tolist()  # a row per pair
        dets, score = z.tolist(), scores.tolist()
        w, sure = cfg.direction_weight, cfg.heading_sure
        out = []
        for (x, y, vx, vy, var_x, var_y, unseen), j in zip(pairs, cols.tolist(), strict=True):
            var = var_x + var_y
            wx = dets[j][0] - x + vx * unseen  # the way from where the track was last seen
            wy = dets[j][1] - y + vy * unseen
            s2 = vx * vx + vy * vy
            norm = math.sqrt((wx * wx + wy * wy) * s2)
            out.append((wx * vx + wy * vy) / norm * s2 / (s2 + sure * var) * w * score[j] if norm > 1e-9 else 0.0)
        return out

    def _correct(self, idx: np.ndarray, det: np.ndarray, z: np.ndarray, scores: np.ndarray, dt: float) -> None:
        """Tracks `idx` take their measurements, the rows `det` of `z` (centre x, centre y, width, height). A
        track unseen for more than `refound_after_s` (and a tick) leaves with the velocity of the straight path
        from where it was last seen to its measurement, as OC-SORT's observation-centric re-update (Cao et al.,
        CVPR 2023) would give it, in closed form: the prediction kept the velocity, so that path's is the predicted
        one plus the innovation over the time unseen. The filter's own gain after a long gap is a little short of
        that, and the velocity it carried through the gap (from before the occlusion) keeps too much weight. A
        few tracks (the usual tick) in plain floats, as numpy's per-call cost would dominate: `_correct_rows`,
        the same arithmetic. A track that lags horizontally first has that estimate's uncertainty widened
        (`_lag`)."""
        if len(idx) <= _FEW_ROWS:
            self._correct_rows(idx, det, z, scores, dt)
            return
        f, z, scores = self._f[idx], z[det], scores[det]
        r = np.maximum(z[:, 3:4], 1.0)
        r *= self.config.meas_noise
        r *= r
        s = f[:, _P11] + r  # the innovation's variance
        innov = z - f[:, _POS]
        if self.config.lag_sigma:
            self._lag(f, innov[:, 0], s[:, 0], dt)
            s = f[:, _P11] + r
        s = np.concatenate((s, s), 1)
        p = f[:, 8:16]  # p11 and p12 side by side, so the gains k1 = p11 / s and k2 = p12 / s are one division
        gain = p / s
        after = max(self.config.refound_after_s, 1.5 * dt)  # (at least a tick missed)
        gap = None
        if self.config.refound_after_s and max(f[:, _UNSEEN].tolist()) > after:  # (plain floats: a few rows)
            gap = f[:, _UNSEEN] > after
            # (the state as predicted, before the filter's own velocity update below)
            path_v = f[gap, _VEL] + innov[gap] / f[gap, _UNSEEN:_UNSEEN + 1]
        f[:, :8] += gain * np.concatenate((innov, innov), 1)  # position += k1 innov, velocity += k2 innov
        f[:, _P22] -= gain[:, 4:] * p[:, 4:]  # p22 -= k2 p12 (p12 as it was) ...
        p *= r / s  # ... then p11 -= k1 p11 and p12 -= k1 p12, as 1 - k1 = r / s
        if gap is not None:
            f[gap, _VEL] = path_v
        f[:, _HITS] += 1
        f[:, _UNSEEN] = 0.0
        f[:, _SCORE] = scores
        self._f[idx] = f

    def _lag(self, f: np.ndarray, innov: np.ndarray, s: np.ndarray, dt: float) -> None:
        """A lag test on the rows `f` about to take their horizontal innovations `innov` (variances `s`): a
        track whose last two sightings, on consecutive ticks, both fell off the same side of its prediction by
        more than `lag_sigma` deviations is not following: the walker turned or sped up, or the camera moves (a
        car's roadside, where a box's speed grows with its size faster than the perspective step predicts from
        a noisy growth rate). That estimate's uncertainty (p11, p12, p22) is multiplied by `lag_fade`, so this
        sighting pulls its position and velocity harder: the fading-memory filter's remedy, applied only on
        evidence. A jittery detector's innovations change sign and do not trigger it. Horizontal only: that is
        where people and a moving camera's view move; the vertical centre and the size follow the detector's
        box, whose errors repeat from one frame to the next (legs cut off, a scale step), so runs there are not
        motion (docs/TUNING.md)."""
        sigma, next_tick = self.config.lag_sigma, 1.5 * dt
        now, lag = [], []
        # (In plain floats, as _correct_rows does it: a few numbers a row, where numpy's per-call cost dominates.)
        for k, (d, v, unseen, last) in enumerate(zip(innov.tolist(), s.tolist(), f[:, _UNSEEN].tolist(),
                                                     f[:, _LAG].tolist(), strict=True)):
            nu, lags = _lag_test(last, d, v, unseen, next_tick, sigma)
            now.append(nu)
            if lags:
                lag.append(k)
        f[:, _LAG] = now
        if lag:
            f[np.array(lag)[:, None], _FADE_COLS] *= self.config.lag_fade

    def _correct_rows(self, idx: np.ndarray, det: np.ndarray, z: np.ndarray, scores: np.ndarray, dt: float) -> None:
        """`_correct` in plain floats, row by row and coordinate by coordinate, each step as `_correct` orders it
        (so the results are the same to the bit)."""
        noise, refound = self.config.meas_noise, self.config.refound_after_s
        after = max(refound, 1.5 * dt)
        lag_sigma, fade, next_tick = self.config.lag_sigma, self.config.lag_fade, 1.5 * dt
        f, z_all, score_all = self._f, z.tolist(), scores.tolist()
        for i, row, j in zip(idx.tolist(), f[idx].tolist(), det.tolist(), strict=True):
            zs, score = z_all[j], score_all[j]
            r = max(zs[3], 1.0) * noise
            r *= r
            unseen = row[_UNSEEN]
            gap = refound and unseen > after
            for c in range(4):
                p11, p12 = row[8 + c], row[12 + c]
                s = p11 + r
                if c == 0 and lag_sigma:  # (_lag)
                    row[_LAG], lags = _lag_test(row[_LAG], zs[0] - row[0], s, unseen, next_tick, lag_sigma)
                    if lags:
                        p11 *= fade
                        p12 *= fade
                        row[16] *= fade
                        s = p11 + r
                k2 = p12 / s
                innov = zs[c] - row[c]
                row[c] += p11 / s * innov
                v = row[4 + c]
                row[4 + c] = v + innov / unseen if gap else v + k2 * innov
                row[16 + c] -= k2 * p12
                q = r / s
                row[8 + c], row[12 + c] = p11 * q, p12 * q
            row[_HITS] += 1
            row[_UNSEEN] = 0.0
            row[_SCORE] = score
            f[i] = row  # (a row at a time: cheaper than one fancy-indexed write of the list of rows)

    def _settle(self, matched: np.ndarray) -> None:
        lim = self._limits
        # A track with min_hits sightings is confirmed for good (sightings only grow); one without is a newborn.
        newborn = self._f[:, _HITS] < lim.min_hits
        # Confirmed: tracked when seen, lost when missed. A newborn stays one until it has its sightings.
        st = _LOST_I8 - matched  # lost (2) less one when seen: tracked (1)
        st[newborn] = _TENTATIVE_I8
        # A newborn missed once has ended; so has any track unseen too long (only lost ones are: a seen track's
        # clock is zero).
        dead = newborn > matched  # (newborn and not seen)
        dead |= self._f[:, _UNSEEN] > lim.max_lost_s
        if np.count_nonzero(dead):
            self._ended.extend(int(i) for i in self._ids[dead & ~newborn])
            keep = ~dead
            self._f, self._ids, st = self._f[keep], self._ids[keep], st[keep]
            if self.config.imm_switch_hz:
                self._imm_x, self._imm_p = self._imm_x[keep], self._imm_p[keep]
                self._imm_mu, self._imm_cbar = self._imm_mu[keep], self._imm_cbar[keep]
        self._state = st

    def _birth(self, z: np.ndarray, scores: np.ndarray) -> None:
        n = len(z)
        if not n:
            return
        h2 = np.maximum(z[:, 3:4], 1.0) ** 2
        f = np.zeros((n, _COLS))
        f[:, _POS] = z
        f[:, _P11] = (2 * self.config.meas_noise) ** 2 * h2
        f[:, _P22] = self.config.birth_speed**2 * h2  # a walker's: up to about a body height per second
        f[:, _SCORE] = scores
        f[:, _HITS] = 1
        f[:, _ONE] = 1.0
        self._f = np.vstack((self._f, f))
        if self.config.imm_switch_hz:  # both models start from the first sighting (standing: no speed)
            x = np.repeat(f[:, None, _IMM_COLS], 2, 1)
            pm = np.repeat(f[:, None, _IMM_P_COLS], 2, 1)
            x[:, 1, :, 1] = 0.0
            pm[:, 1, :, 1:] = 0.0
            self._imm_x = np.concatenate((self._imm_x, x))
            self._imm_p = np.concatenate((self._imm_p, pm))
            prior = np.repeat(_IMM_PRIOR[None], n, 0)
            self._imm_mu = np.concatenate((self._imm_mu, prior))
            self._imm_cbar = np.concatenate((self._imm_cbar, prior))
        self._ids = np.concatenate((self._ids, np.arange(self._next_id, self._next_id + n)))
        self._next_id += n
        first = self.config.min_hits <= 1
        self._state = np.concatenate((self._state, np.full(n, _TRACKED if first else _TENTATIVE, np.int8)))

    def _report(self) -> list[Track]:
        out = []
        coast, frame = self.config.coast_s, self._frame
        for i, st, r in zip(self._ids.tolist(), self._state.tolist(), self._f.tolist(), strict=True):  # plain floats
            if st != _TRACKED and not (coast and st == _LOST and r[_UNSEEN] <= coast):
                continue
            cx, cy, hw, hh = r[0], r[1], max(r[2], 1.0) / 2, max(r[3], 1.0) / 2
            if st == _LOST and frame is not None and _inside(cx, cy, hw, hh, frame) < 0.5:
                continue  # a guess of where a person out of the frame is: nothing to report
            # The foot point moves with the centre plus half the height's rate.
            out.append(Track(i, (cx - hw, cy - hh, cx + hw, cy + hh), r[_SCORE], (r[4], r[5] + r[7] / 2), r[_AGE],
                             int(r[_HITS]), r[_UNSEEN]))
        return out

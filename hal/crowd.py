"""A second scripted detector, written apart from `hal.scripted.ScriptedDetector` so a tracker tuned on one
replay can be tried on errors it was never tuned on. It replays MOTChallenge ground truth with errors of other
kinds and other laws:

- misses driven by occlusion: a person's chance of being found falls with their visibility (the gt's own
  column when the file has one, else the share of their box not covered by boxes nearer the camera), and a
  person standing close behind another is often merged into them (a detector's NMS);
- misses correlated across people: a slowly varying difficulty field over the image (an AR(1) process per
  cell of a coarse grid, shared by everyone in the cell: glare, blur, a crowd the detector gives up on), so
  neighbours are missed together, unlike ScriptedDetector's independent per-person runs;
- jitter that repeats from frame to frame (AR(1) per person) with heavy tails (Student t), scaled by the box
  height, and boxes cut to the visible part when occluded from below;
- false positives that come and go as clutter does (sites born at a Poisson rate that live a few seconds),
  and duplicate part boxes on found people, more of them in a crowd;
- scores from Beta laws on another scale than the SSD's: true detections mostly 0.75 to 0.98 (lower when
  occluded), false ones spread widely around 0.5.

Seeded and deterministic: everything is drawn once, at construction, over the whole sequence, so the same
seed gives the same detections whatever order frames are asked in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hal.clock import Clock
from hal.detections import Detections
from hal.errors import DetectorError
from hal.frame import Frame


@dataclass(frozen=True, slots=True)
class CrowdErrors:
    base_find: float = 0.95  # chance of finding a fully visible person on an ordinary frame
    visibility_mid: float = 0.25  # visibility at which the chance is halved
    visibility_slope: float = 0.08  # how sharply it falls around that (a logistic's scale)
    merge_iou: float = 0.45  # a person behind another with at least this IoU ...
    merge_chance: float = 0.6  # ... is merged into them (missed) this often
    field_cells: tuple[int, int] = (4, 3)  # the difficulty field's grid over the image (columns, rows)
    field_std: float = 1.5  # its deviation, in logits of the chance of finding
    field_memory_s: float = 2.0  # its time constant
    jitter: float = 0.04  # scale of box edge noise as a share of box height (Student t, 3 degrees of freedom)
    jitter_memory_s: float = 0.5  # how long a person's box error lasts (AR(1) time constant)
    clutter_rate: float = 0.8  # clutter sites born per second
    clutter_life_s: float = 3.0  # mean life of a site
    clutter_flicker: float = 0.6  # chance a live site is detected on a frame
    part_chance: float = 0.04  # chance per found person of a duplicate part box ...
    part_crowd: float = 0.02  # ... plus this for each other person overlapping them
    tp_beta: tuple[float, float] = (9.0, 1.6)  # Beta law of a true detection's score (mean 0.85)
    fp_beta: tuple[float, float] = (3.0, 3.0)  # Beta law of a false one's (mean 0.5)

    def validate(self) -> None:
        for name in ("base_find", "merge_chance", "clutter_flicker", "part_chance"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: must be in [0, 1], got {getattr(self, name)}")
        for name in ("visibility_slope", "field_memory_s", "jitter_memory_s", "clutter_life_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")
        if min(self.tp_beta + self.fp_beta) <= 0:
            raise ValueError("tp_beta, fp_beta: Beta parameters must be positive")


class CrowdDetector:
    """Replays `gt` rows (frame, id, x, y, w, h[, visibility]) in pixels of a `source_size` image, `fps` frames a
    second, keyed by `frame.seq`; frames outside the sequence see nothing."""

    backend = "scripted"

    def __init__(self, gt: np.ndarray, source_size: tuple[int, int], fps: float, *,
                 errors: CrowdErrors = CrowdErrors(), seed: int = 0, clock: Clock | None = None) -> None:
        errors.validate()
        if fps <= 0:
            raise DetectorError(f"fps: must be positive, got {fps}")
        gt = np.asarray(gt, np.float64)
        if gt.ndim != 2 or gt.shape[1] not in (6, 7):
            raise DetectorError("gt: rows of (frame, id, x, y, w, h[, visibility]) expected")
        self.source_size, self.errors, self.seed, self.clock = source_size, errors, seed, clock
        self.calls = 0
        self.frames = int(gt[:, 0].max()) if len(gt) else 0
        self._per_frame = _replay(gt, source_size, fps, self.frames, errors, seed)

    @classmethod
    def from_mot(cls, gt_path: Path, source_size: tuple[int, int], fps: float, **kw) -> CrowdDetector:
        """From a MOTChallenge gt.txt: pedestrians only and their visibility (MOT16+), whole rows for MOT15."""
        path = Path(gt_path)
        try:
            raw = np.loadtxt(path, delimiter=",", ndmin=2)
        except (OSError, ValueError) as e:
            raise DetectorError(f"{path}: not a readable MOTChallenge gt.txt ({e})") from e
        if raw.shape[1] == 9:
            raw = raw[(raw[:, 6] != 0) & np.isin(raw[:, 7], (1, -1))]
            return cls(raw[:, [0, 1, 2, 3, 4, 5, 8]], source_size, fps, **kw)
        return cls(raw[:, :6], source_size, fps, **kw)

    def detect(self, frame: Frame) -> Detections:
        self.calls += 1
        _ = frame.pixels[0, 0, 0]  # a released frame raises, as a real detector reading it would
        if not 1 <= frame.seq <= self.frames:
            return Detections.empty()
        xyxy, scores = self._per_frame[frame.seq - 1]
        w, h = self.source_size
        boxes = np.clip(xyxy / np.array([w, h, w, h]), 0.0, 1.0).astype(np.float32)
        return Detections(boxes, scores.astype(np.float32), np.zeros(len(boxes), np.int32))

    def close(self) -> None:
        pass


def occlusion(xywh: np.ndarray) -> np.ndarray:
    """Per box of one frame: the share of its area covered by boxes whose bottom edge is lower in the image
    (nearer the camera, on a floor seen from above), at most 1. Overlaps among the occluders are counted
    once per occluder, so a crowd can cover a person fully."""
    if len(xywh) < 2:
        return np.zeros(len(xywh))
    x0, y0 = xywh[:, 0], xywh[:, 1]
    x1, y1 = x0 + xywh[:, 2], y0 + xywh[:, 3]
    iw = np.clip(np.minimum(x1[:, None], x1) - np.maximum(x0[:, None], x0), 0, None)
    ih = np.clip(np.minimum(y1[:, None], y1) - np.maximum(y0[:, None], y0), 0, None)
    nearer = y1[None, :] > y1[:, None]
    cover = (iw * ih * nearer).sum(1) / np.maximum(xywh[:, 2] * xywh[:, 3], 1e-9)
    return np.minimum(cover, 1.0)


def _field(rng: np.random.Generator, frames: int, cells: tuple[int, int], std: float, memory: float) -> np.ndarray:
    """(frames, rows, columns) AR(1) difficulty, stationary with deviation `std`, `memory` frames' time constant."""
    rho = float(np.exp(-1.0 / memory))
    out = np.empty((frames, cells[1], cells[0]))
    x = rng.normal(0, std, (cells[1], cells[0]))
    noise = rng.normal(0, std * np.sqrt(1 - rho * rho), (frames, cells[1], cells[0]))
    for f in range(frames):
        out[f] = x
        x = rho * x + noise[f]
    return out


def _replay(gt: np.ndarray, size: tuple[int, int], fps: float, frames: int, e: CrowdErrors,
            seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every frame's detections (xyxy pixels, scores), drawn in a fixed order from one seeded generator."""
    rng = np.random.default_rng([seed, 17])
    gt = gt[np.lexsort((gt[:, 1], gt[:, 0]))]
    field = _field(rng, max(frames, 1), e.field_cells, e.field_std, e.field_memory_s * fps)
    rho = float(np.exp(-1.0 / (e.jitter_memory_s * fps)))
    err: dict[int, np.ndarray] = {}  # per identity: its box error (4 edges, in box heights)
    sites = _clutter(rng, frames, size, gt, fps, e)
    starts = np.searchsorted(gt[:, 0], np.arange(1, frames + 2))
    out = []
    for f in range(1, frames + 1):
        rows = gt[starts[f - 1]:starts[f]]
        xywh = rows[:, 2:6]
        cover = occlusion(xywh)
        vis = rows[:, 6] if rows.shape[1] == 7 else 1.0 - cover
        boxes, scores = _people(rng, rows, xywh, vis, cover, field[f - 1], size, err, rho, e)
        live = [s for s in sites if s[0] <= f < s[1]]
        fire = rng.random(len(live)) < e.clutter_flicker
        for (_, _, box), on in zip(live, fire, strict=True):
            if on:
                boxes.append(box + rng.normal(0, 0.03, 4) * (box[3] - box[1]))
                scores.append(rng.beta(*e.fp_beta))
        out.append((np.array(boxes).reshape(-1, 4), np.array(scores, np.float64)))
    return out


def _people(rng: np.random.Generator, rows: np.ndarray, xywh: np.ndarray, vis: np.ndarray, cover: np.ndarray,
            field: np.ndarray, size: tuple[int, int], err: dict[int, np.ndarray], rho: float,
            e: CrowdErrors) -> tuple[list[np.ndarray], list[float]]:
    """One frame's found people (with their box errors and scores) and part boxes."""
    n = len(rows)
    cx = np.clip(((xywh[:, 0] + xywh[:, 2] / 2) / size[0] * e.field_cells[0]).astype(int), 0, e.field_cells[0] - 1)
    cy = np.clip(((xywh[:, 1] + xywh[:, 3]) / size[1] * e.field_cells[1]).astype(int), 0, e.field_cells[1] - 1)
    logit = np.log(e.base_find / max(1.0 - e.base_find, 1e-9)) + field[cy, cx]
    find = 1.0 / (1.0 + np.exp(-logit)) / (1.0 + np.exp(-(vis - e.visibility_mid) / e.visibility_slope))
    found = rng.random(n) < find
    merged = _merged(xywh, e.merge_iou) & (rng.random(n) < e.merge_chance)
    found &= ~merged
    u = rng.random(n)  # (drawn for everyone, so one person's fate does not shift another's draws)
    noise = rng.standard_t(3, (n, 4)) * e.jitter * np.sqrt(1 - rho * rho)
    scores_tp = rng.beta(*e.tp_beta, n)
    boxes, scores = [], []
    overlaps = _overlap_counts(xywh)
    for k in range(n):
        ident = int(rows[k, 1])
        prev = err.get(ident)
        err[ident] = noise[k] if prev is None else rho * prev + noise[k]
        if not found[k]:
            continue
        x, y, w, h = xywh[k]
        box = np.array([x, y, x + w, y + h]) + err[ident] * h
        if cover[k] > 0.3:  # cut to the visible part: the lower body is hidden behind someone nearer
            box[3] -= 0.5 * cover[k] * h * (0.5 + 0.5 * u[k])
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            continue
        boxes.append(box)
        scores.append(float(scores_tp[k]) * (0.6 + 0.4 * min(max(float(vis[k]), 0.0), 1.0)))
        if rng.random() < e.part_chance + e.part_crowd * overlaps[k]:
            top = box.copy()
            top[3] = top[1] + (top[3] - top[1]) * rng.uniform(0.35, 0.6)  # head and shoulders
            boxes.append(top)
            scores.append(float(rng.beta(*e.fp_beta)))
    return boxes, scores


def _merged(xywh: np.ndarray, min_iou: float) -> np.ndarray:
    """Per box: another box nearer the camera (lower bottom edge) overlaps it with at least `min_iou` IoU."""
    if len(xywh) < 2:
        return np.zeros(len(xywh), bool)
    x0, y0 = xywh[:, 0], xywh[:, 1]
    x1, y1 = x0 + xywh[:, 2], y0 + xywh[:, 3]
    iw = np.clip(np.minimum(x1[:, None], x1) - np.maximum(x0[:, None], x0), 0, None)
    ih = np.clip(np.minimum(y1[:, None], y1) - np.maximum(y0[:, None], y0), 0, None)
    area = xywh[:, 2] * xywh[:, 3]
    iou = iw * ih / np.maximum(area[:, None] + area - iw * ih, 1e-9)
    return ((iou >= min_iou) & (y1[None, :] > y1[:, None])).any(1)


def _overlap_counts(xywh: np.ndarray) -> np.ndarray:
    """Per box: how many other boxes it overlaps at all."""
    if len(xywh) < 2:
        return np.zeros(len(xywh))
    x0, y0 = xywh[:, 0], xywh[:, 1]
    x1, y1 = x0 + xywh[:, 2], y0 + xywh[:, 3]
    hit = (np.minimum(x1[:, None], x1) > np.maximum(x0[:, None], x0)) & (
        np.minimum(y1[:, None], y1) > np.maximum(y0[:, None], y0))
    return hit.sum(1) - 1.0


def _clutter(rng: np.random.Generator, frames: int, size: tuple[int, int], gt: np.ndarray, fps: float,
             e: CrowdErrors) -> list[tuple[int, int, np.ndarray]]:
    """Clutter sites (first frame, end frame, xyxy box): born at `clutter_rate` a second anywhere in the image,
    sized like the sequence's people, living an exponential time of mean `clutter_life_s`."""
    n = int(rng.poisson(e.clutter_rate * frames / fps))
    ref = np.median(gt[:, 4:6], axis=0) if len(gt) else np.array([40.0, 100.0])
    born = rng.integers(1, max(frames, 1) + 1, n)
    life = np.maximum(1, np.round(rng.exponential(e.clutter_life_s * fps, n))).astype(int)
    wh = ref * np.exp(rng.normal(0, 0.3, (n, 2)))
    xy = rng.random((n, 2)) * np.maximum(np.array(size) - wh, 1.0)
    return [(int(b), int(b + t), np.array([x, y, x + w, y + h]))
            for b, t, (x, y), (w, h) in zip(born, life, xy, wh, strict=True)]

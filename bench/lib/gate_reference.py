"""The gate (firmware.sensing.gating, firmware.sensing.motion) as it was before its cost was cut (main
6aa6124, copied verbatim but for the class names): the reference the faster one must agree with exactly, box
for box and region for region (tests/firmware/sensing/test_gate_reference.py, `python -m bench.gate_speed`).
Not used by the device."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from firmware.config.sensing import DetectorConfig
from firmware.sensing.gating import GateStats


def _dilate(m: np.ndarray) -> np.ndarray:
    """A 3x3 binary dilation from shifted ORs (scipy's is ten times slower at this size)."""
    rows = m.copy()
    rows[1:] |= m[:-1]
    rows[:-1] |= m[1:]
    out = rows.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


class ReferenceMotion:
    """`boxes(pixels)` returns (N, 4) float64 boxes [x0, y0, x1, y1] normalized to the frame, around what
    changed since the background. The first frame (and one after a change of more than `relearn` of the
    image, such as lights switched on) only teaches the background and reports no motion."""

    def __init__(self, threshold: int = 20, min_area: float = 0.0002, alpha: float = 0.1,
                 target_height: int = 64, relearn: float = 0.6) -> None:
        self.threshold = float(threshold)
        self.min_area = min_area
        self.alpha = alpha
        self.target_height = target_height
        self.relearn = relearn
        self._bg: np.ndarray | None = None
        self.share = 0.0  # share of the small image that moved in the last frame

    def reset(self) -> None:
        if self._bg is not None:
            self._bg.fill(0)
        self._bg = None

    def _small(self, pixels: np.ndarray) -> np.ndarray:
        step = max(1, pixels.shape[0] // self.target_height)
        g = pixels[::step, ::step, 1].astype(np.float32)  # green: most of luma, one channel read
        g[:-1, :-1] += g[1:, :-1] + g[:-1, 1:] + g[1:, 1:]  # a 2x2 box blur, in place
        small = g[:-1, :-1]
        small *= 0.25
        return small

    def boxes(self, pixels: np.ndarray) -> np.ndarray:
        small = self._small(pixels)
        if self._bg is None or self._bg.shape != small.shape:
            self._bg = small.copy()
            small.fill(0)
            return np.zeros((0, 4))
        diff = small - self._bg
        small.fill(0)
        moved = np.abs(diff) > self.threshold
        self.share = float(np.count_nonzero(moved)) / moved.size
        if self.share > self.relearn:  # the whole picture changed: learn it again, report nothing
            self._bg += diff
            return np.zeros((0, 4))
        # the background follows the scene slowly where nothing moves, and ten times more slowly where
        # something does, so a person who stops fades into it over tens of seconds (tracked regions keep them)
        np.multiply(diff, 0.1, out=diff, where=moved)
        diff *= self.alpha
        self._bg += diff
        if self.share == 0.0:
            return np.zeros((0, 4))
        return self._blobs(_dilate(_dilate(moved)))

    def _blobs(self, mask: np.ndarray) -> np.ndarray:
        labels, n = ndimage.label(mask)
        if not n:
            return np.zeros((0, 4))
        h, w = mask.shape
        areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        out = []
        for i, sl in enumerate(ndimage.find_objects(labels)):
            if sl is not None and areas[i] >= self.min_area * h * w:
                out.append((sl[1].start / w, sl[0].start / h, sl[1].stop / w, sl[0].stop / h))
        return np.array(out, dtype=np.float64).reshape(-1, 4)


class ReferenceGate:
    """`plan(pixels, t_s)` gives the regions (R, 4) [x0, y0, x1, y1] normalized to the frame for this frame;
    `observe(tracks, frame_size, t_s)` tells it the tracker's tracks (pixels, with velocities, coasting ones
    included) after the frame."""

    def __init__(self, cfg: DetectorConfig, grid: np.ndarray) -> None:
        self.cfg = cfg
        self.grid = np.asarray(grid, dtype=np.float64).reshape(-1, 4)
        self.tile = (float(self.grid[0, 2] - self.grid[0, 0]), float(self.grid[0, 3] - self.grid[0, 1]))
        self.motion = ReferenceMotion(cfg.motion_threshold, cfg.motion_min_area, cfg.motion_alpha)
        self.stats = GateStats()
        self._boxes = np.zeros((0, 4))  # last tracks, normalized
        self._vel = np.zeros((0, 2))  # their velocities, normalized per second
        self._t_obs = 0.0
        self._sweep_at: float | None = None  # when the sweep in progress (or the last one) began
        self._cursor = len(self.grid)  # next tile of the sweep in progress; len(grid): none in progress

    def reset(self) -> None:
        self.motion.reset()

    def observe(self, tracks: Sequence, frame_size: tuple[int, int], t_s: float) -> None:
        w, h = frame_size
        scale = np.array([w, h, w, h], dtype=np.float64)
        self._boxes = np.array([t.box for t in tracks], dtype=np.float64).reshape(-1, 4) / scale
        self._vel = np.array([t.velocity for t in tracks], dtype=np.float64).reshape(-1, 2) / scale[:2]
        self._t_obs = t_s

    def predicted(self, t_s: float) -> np.ndarray:
        """The tracked people's boxes moved on to `t_s` and grown by `region_grow` on each side."""
        if not len(self._boxes):
            return self._boxes
        dt = min(max(t_s - self._t_obs, 0.0), 2.0)
        shift = np.tile(self._vel * dt, 2)
        b = self._boxes + shift
        g = self.cfg.region_grow * np.column_stack((b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]))
        return np.clip(b + np.column_stack((-g, g)), 0.0, 1.0)

    def plan(self, pixels: np.ndarray, t_s: float) -> np.ndarray:
        moving = self.motion.boxes(pixels)
        self.stats.frames += 1
        self.stats.motion_frames += bool(len(moving))
        cands = np.vstack((self.predicted(t_s), moving))
        regions = pack(cands, self.tile)
        sweeping = self._sweep_due(t_s)
        budget = self.cfg.max_invokes - (1 if sweeping else 0)
        regions = merge_to_budget(regions, max(budget, 0), self.tile)
        sweep = self._sweep_tiles(self.cfg.max_invokes - len(regions)) if sweeping else np.zeros((0, 4))
        out = np.vstack((regions, sweep))
        self.stats.invokes += len(out)
        self.stats.sweep_invokes += len(sweep)
        return out

    def _sweep_due(self, t_s: float) -> bool:
        if self._cursor < len(self.grid):
            return True
        every = self.cfg.sweep_s if len(self._boxes) else max(self.cfg.idle_sweep_s, self.cfg.sweep_s)
        if self._sweep_at is None or t_s - self._sweep_at >= every:
            self._sweep_at, self._cursor = t_s, 0
            return True
        return False

    def _sweep_tiles(self, n: int) -> np.ndarray:
        take = self.grid[self._cursor:self._cursor + max(n, 0)]
        self._cursor += len(take)
        return take


Box = list[float]  # [x0, y0, x1, y1]: plain floats, a few dozen of them a frame (numpy costs more here)


def pack(boxes: np.ndarray, tile: tuple[float, float]) -> np.ndarray:
    """Regions holding every box whole: boxes are grouped while a group's bounding box fits in one tile,
    then each group becomes a region of the tile's shape (larger, same aspect, if a single box is larger)
    centred on it and kept inside the frame."""
    order = np.argsort(boxes[:, 0], kind="stable") if len(boxes) else np.zeros(0, np.int64)
    groups: list[Box] = [[float(v) for v in boxes[i]] for i in order]
    merged = True
    while merged and len(groups) > 1:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                u = _union(groups[i], groups[j])
                if u[2] - u[0] <= tile[0] and u[3] - u[1] <= tile[1]:
                    groups[i] = u
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    return np.array([fit(g, tile) for g in groups], dtype=np.float64).reshape(-1, 4)


def merge_to_budget(regions: np.ndarray, budget: int, tile: tuple[float, float]) -> np.ndarray:
    """While there are more regions than `budget`, the two whose merged region adds least area become one."""
    if budget <= 0:
        return np.zeros((0, 4))
    regs: list[Box] = [[float(v) for v in r] for r in regions]
    while len(regs) > budget:
        best, pair = float("inf"), (0, 1)
        for i in range(len(regs)):
            for j in range(i + 1, len(regs)):
                u = fit(_union(regs[i], regs[j]), tile)
                cost = _area(u) - _area(regs[i]) - _area(regs[j])
                if cost < best:
                    best, pair = cost, (i, j)
        i, j = pair
        regs[i] = fit(_union(regs[i], regs[j]), tile)
        del regs[j]
    return np.array(regs, dtype=np.float64).reshape(-1, 4)


def fit(box: Box | np.ndarray, tile: tuple[float, float]) -> Box:
    """The region of the tile's aspect, at least a tile, that holds `box`, centred on it, inside [0, 1]."""
    tw, th = tile
    x0, y0, x1, y1 = (float(v) for v in box)
    scale = max(1.0, (x1 - x0) / tw, (y1 - y0) / th)
    w, h = min(tw * scale, 1.0), min(th * scale, 1.0)
    cx = min(max((x0 + x1) / 2, w / 2), 1 - w / 2)
    cy = min(max((y0 + y1) / 2, h / 2), 1 - h / 2)
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def _union(a: Box, b: Box) -> Box:
    return [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]


def _area(r: Box) -> float:
    return (r[2] - r[0]) * (r[3] - r[1])

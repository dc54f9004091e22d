"""Inference where people are: which regions of the frame the detector runs on, Frigate's way (motion gates
the detector, regions follow motion and tracked objects), written for Umbra.

Each frame the gate gathers candidate boxes: what moved on the low-res stream (firmware.sensing.motion) and
where each tracked person is predicted to be now (their last box moved on by their velocity, grown), packs
them into regions the size of one tile (so the detector sees people at the tiling's scale), merges regions
while there are more than the budget allows, and sweeps every tile of the fixed grid, spread over frames
at whatever budget is left (at least one tile a frame), at least every `sweep_s`: a person standing still
makes no motion, and one the tracker lost is found again by the next sweep. While no one is tracked (an empty
scene) the sweep comes only every `idle_sweep_s` (never more often than `sweep_s`): what walks in makes motion,
and its regions find it. No clock, no I/O: times come with the frames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from firmware.config.sensing import DetectorConfig
from firmware.sensing.motion import MotionDetector


@dataclass(slots=True)
class GateStats:
    frames: int = 0
    invokes: int = 0  # regions handed to the detector, sweep tiles included
    sweep_invokes: int = 0
    motion_frames: int = 0  # frames in which something moved


class Gate:
    """`plan(pixels, t_s)` gives the regions (R, 4) [x0, y0, x1, y1] normalized to the frame for this frame;
    `observe(tracks, frame_size, t_s)` tells it the tracker's tracks (pixels, with velocities, coasting ones
    included) after the frame."""

    def __init__(self, cfg: DetectorConfig, grid: np.ndarray) -> None:
        self.cfg = cfg
        self.grid = np.asarray(grid, dtype=np.float64).reshape(-1, 4)
        self.tile = (float(self.grid[0, 2] - self.grid[0, 0]), float(self.grid[0, 3] - self.grid[0, 1]))
        self._tiles: list[Box] = self.grid.tolist()
        self.motion = MotionDetector(cfg.motion_threshold, cfg.motion_min_area, cfg.motion_alpha)
        self.stats = GateStats()
        # last tracks, normalized: (x0, y0, x1, y1, vx, vy), velocities per second; plain floats, a few a frame
        self._tracks: list[tuple[float, float, float, float, float, float]] = []
        self._t_obs = 0.0
        self._sweep_at: float | None = None  # when the sweep in progress (or the last one) began
        self._cursor = len(self.grid)  # next tile of the sweep in progress; len(grid): none in progress

    def reset(self) -> None:
        self.motion.reset()

    def observe(self, tracks: Sequence, frame_size: tuple[int, int], t_s: float) -> None:
        w, h = float(frame_size[0]), float(frame_size[1])
        self._tracks = [(float(x0) / w, float(y0) / h, float(x1) / w, float(y1) / h, float(vx) / w, float(vy) / h)
                        for (x0, y0, x1, y1), (vx, vy) in ((t.box, t.velocity) for t in tracks)]
        self._t_obs = t_s

    def predicted(self, t_s: float) -> np.ndarray:
        """The tracked people's boxes moved on to `t_s` and grown by `region_grow` on each side."""
        return np.array(self._predicted(t_s), dtype=np.float64).reshape(-1, 4)

    def _predicted(self, t_s: float) -> list[Box]:
        dt = min(max(t_s - self._t_obs, 0.0), 2.0)
        grow = self.cfg.region_grow
        out = []
        for x0, y0, x1, y1, vx, vy in self._tracks:
            sx, sy = vx * dt, vy * dt
            x0, y0, x1, y1 = x0 + sx, y0 + sy, x1 + sx, y1 + sy
            gx, gy = grow * (x1 - x0), grow * (y1 - y0)
            out.append([_clip01(x0 - gx), _clip01(y0 - gy), _clip01(x1 + gx), _clip01(y1 + gy)])
        return out

    def plan(self, pixels: np.ndarray, t_s: float) -> np.ndarray:
        moving = self.motion.regions(pixels)
        self.stats.frames += 1
        self.stats.motion_frames += bool(moving)
        regions = _pack_list(self._predicted(t_s) + moving, self.tile)
        sweeping = self._sweep_due(t_s)
        budget = self.cfg.max_invokes - (1 if sweeping else 0)
        regions = _merge_list(regions, max(budget, 0), self.tile)
        sweep = self._sweep_tiles(self.cfg.max_invokes - len(regions)) if sweeping else []
        self.stats.invokes += len(regions) + len(sweep)
        self.stats.sweep_invokes += len(sweep)
        return np.array(regions + sweep, dtype=np.float64).reshape(-1, 4)

    def _sweep_due(self, t_s: float) -> bool:
        if self._cursor < len(self.grid):
            return True
        every = self.cfg.sweep_s if self._tracks else max(self.cfg.idle_sweep_s, self.cfg.sweep_s)
        if self._sweep_at is None or t_s - self._sweep_at >= every:
            self._sweep_at, self._cursor = t_s, 0
            return True
        return False

    def _sweep_tiles(self, n: int) -> list[Box]:
        take = self._tiles[self._cursor:self._cursor + max(n, 0)]
        self._cursor += len(take)
        return take


Box = list[float]  # [x0, y0, x1, y1]: plain floats, a few dozen of them a frame (numpy costs more here)


def pack(boxes: np.ndarray, tile: tuple[float, float]) -> np.ndarray:
    """Regions holding every box whole: boxes are grouped while a group's bounding box fits in one tile,
    then each group becomes a region of the tile's shape (larger, same aspect, if a single box is larger)
    centred on it and kept inside the frame.

    Groups are taken in order of their left edge, and the first pair (in that order) whose union fits is
    merged, again and again. After a merge of (i, j) no pair before (i, j) can fit (their unions only grew),
    so the scan goes on from there instead of from the start; and since a group keeps its first box's left
    edge, no group further right than a tile's width from group i can join it."""
    return np.array(_pack_list(boxes.tolist(), tile), dtype=np.float64).reshape(-1, 4)


def _pack_list(boxes: list[Box], tile: tuple[float, float]) -> list[Box]:
    tw, th = tile
    groups = sorted(boxes, key=_left)  # stable, as the boxes came
    prune = all(g[2] >= g[0] for g in groups)  # a group's right edge never left of its left one
    i = 0
    while i < len(groups) - 1:
        gi, j = groups[i], i + 1
        while j < len(groups):
            gj = groups[j]
            if prune and gj[0] - gi[0] > tw:
                break
            u = _union(gi, gj)
            if u[2] - u[0] <= tw and u[3] - u[1] <= th:
                groups[i] = gi = u
                del groups[j]
            else:
                j += 1
        i += 1
    return [fit(g, tile) for g in groups]


def _left(box: Box) -> float:
    return box[0]


def _clip01(v: float) -> float:
    """`np.clip(v, 0.0, 1.0)` on one float, to the bit (NaN kept, -0.0 made 0.0)."""
    return 0.0 if v <= 0.0 else 1.0 if v >= 1.0 else v


def merge_to_budget(regions: np.ndarray, budget: int, tile: tuple[float, float]) -> np.ndarray:
    """While there are more regions than `budget`, the two whose merged region adds least area become one."""
    if budget <= 0:
        return np.zeros((0, 4))
    merged = _merge_list([[float(v) for v in r] for r in regions], budget, tile)
    return np.array(merged, dtype=np.float64).reshape(-1, 4)


def _merge_list(regs: list[Box], budget: int, tile: tuple[float, float]) -> list[Box]:
    if budget <= 0:
        return []
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
    return regs


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

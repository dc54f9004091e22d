"""The gate as it was on main at 7712da2 (firmware.sensing.motion and firmware.sensing.gating, verbatim but for
the import between them), kept only so that `umbra bench speed --compare` can run the old gate beside the
new one in the same process, round for round. Nothing else imports it; tests/firmware/sensing/
test_gate_reference.py checks the new code against digests of the old outputs, and `--compare` checks that
both gates plan the same regions on every frame of its run."""

# mypy: ignore-errors

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from firmware.config.sensing import DetectorConfig

_CROSS = ndimage.generate_binary_structure(2, 1)  # 4-connected blobs (scipy's default)


class _Work:
    """The per-frame buffers for a thumbnail of (h, w) samples: allocated once, zeroed after every frame."""

    def __init__(self, h: int, w: int) -> None:
        self.grey = np.zeros((h, w), np.uint8)  # the strided samples
        self.pairs = np.zeros((h, w - 1), np.uint16)  # sums of horizontal neighbours
        self.small = np.zeros((h - 1, w - 1), np.float32)  # the 2x2 blur, then its difference from the background
        self.size = np.zeros((h - 1, w - 1), np.float32)  # the difference's magnitude
        self.moved = np.zeros((h - 1, w - 1), bool)
        self.rows = np.zeros((h - 1, w - 1), bool)  # the mask dilated along rows
        self.grown = np.zeros((h - 1, w - 1), bool)  # ... and then along columns: a 5x5 dilation
        # 4-connected blobs number at most half the samples: 16 bits hold them but in a huge thumbnail
        self.labels = np.zeros((h - 1, w - 1), np.int16 if h * w < 2**16 else np.int32)
        self.shape = (h, w)

    def zero(self) -> None:
        for a in (self.grey, self.pairs, self.small, self.size, self.moved, self.rows, self.grown,
                  self.labels):
            a.fill(0)


def _dilate(m: np.ndarray) -> np.ndarray:
    """A 3x3 binary dilation from shifted ORs (scipy's is ten times slower at this size)."""
    rows = m.copy()
    rows[1:] |= m[:-1]
    rows[:-1] |= m[1:]
    out = rows.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def _dilate5(m: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`_dilate(_dilate(m))` (a 5x5 square, nothing beyond the edges) into preallocated buffers: along rows,
    then along columns (OpenCV's dilate gives the same, no faster in the loop)."""
    np.copyto(rows, m)
    rows[:, 1:] |= m[:, :-1]
    rows[:, 2:] |= m[:, :-2]
    rows[:, :-1] |= m[:, 1:]
    rows[:, :-2] |= m[:, 2:]
    np.copyto(out, rows)
    out[1:] |= rows[:-1]
    out[2:] |= rows[:-2]
    out[:-1] |= rows[1:]
    out[:-2] |= rows[2:]
    return out


class MotionDetector:
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
        self._work: _Work | None = None
        self.share = 0.0  # share of the small image that moved in the last frame

    def reset(self) -> None:
        if self._bg is not None:
            self._bg.fill(0)
        self._bg = None
        if self._work is not None:
            self._work.zero()
        self._work = None

    def _small(self, pixels: np.ndarray) -> tuple[_Work, np.ndarray]:
        step = max(1, pixels.shape[0] // self.target_height)
        # green (most of luma, one channel read), every step-th sample; from a contiguous frame as a 2-D view
        # with one stride a row, which numpy reads several times faster than the 3-D one
        if pixels.ndim == 3 and pixels.shape[2] > 1 and pixels.flags.c_contiguous:
            c = pixels.shape[2]
            grey = pixels.reshape(pixels.shape[0], -1)[::step, 1::c * step]
        else:
            grey = pixels[::step, ::step, 1]
        if self._work is None or self._work.shape != grey.shape:
            self._work = _Work(*grey.shape)
        wk = self._work
        np.copyto(wk.grey, grey)
        g = wk.grey
        np.add(g[:, :-1], g[:, 1:], out=wk.pairs, dtype=np.uint16)  # a 2x2 box blur: whole numbers, exact
        np.add(wk.pairs[:-1], wk.pairs[1:], out=wk.small, dtype=np.float32)
        wk.small *= 0.25
        return wk, wk.small

    def boxes(self, pixels: np.ndarray) -> np.ndarray:
        wk, small = self._small(pixels)
        try:
            return self._boxes(wk, small)
        finally:
            wk.zero()

    def _boxes(self, wk: _Work, small: np.ndarray) -> np.ndarray:
        if self._bg is None or self._bg.shape != small.shape:
            self._bg = small.copy()
            return np.zeros((0, 4))
        diff = np.subtract(small, self._bg, out=small)
        moved = np.greater(np.abs(diff, out=wk.size), self.threshold, out=wk.moved)
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
        return self._blobs(_dilate5(moved, wk.rows, wk.grown), wk.labels)

    def _blobs(self, mask: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        if labels is None:
            labels = np.zeros(mask.shape, np.int32)
        n = ndimage.label(mask, structure=_CROSS, output=labels)
        if not n:
            return np.zeros((0, 4))
        h, w = mask.shape
        least = self.min_area * h * w
        # a blob of the 5x5-dilated mask holds at least a 3x3 square (a moved sample in a corner), so below
        # nine samples the area check passes every blob and is skipped
        areas = np.bincount(labels.ravel(), minlength=n + 1)[1:].tolist() if least > 9 or min(h, w) < 3 else None
        out = [(sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
               for i, sl in enumerate(ndimage.find_objects(labels, n))
               if sl is not None and (areas is None or areas[i] >= least)]
        if not out:
            return np.zeros((0, 4))
        return np.array(out, dtype=np.float64) / np.array((w, h, w, h), dtype=np.float64)





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
        moving = self.motion.boxes(pixels)
        self.stats.frames += 1
        self.stats.motion_frames += bool(len(moving))
        regions = _pack(self._predicted(t_s) + moving.tolist(), self.tile)
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
        every = self.cfg.sweep_s if self._tracks else max(self.cfg.idle_sweep_s, self.cfg.sweep_s)
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
    centred on it and kept inside the frame.

    Groups are taken in order of their left edge, and the first pair (in that order) whose union fits is
    merged, again and again. After a merge of (i, j) no pair before (i, j) can fit (their unions only grew),
    so the scan goes on from there instead of from the start; and since a group keeps its first box's left
    edge, no group further right than a tile's width from group i can join it."""
    return _pack(boxes.tolist(), tile)


def _pack(boxes: list[Box], tile: tuple[float, float]) -> np.ndarray:
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
    return np.array([fit(g, tile) for g in groups], dtype=np.float64).reshape(-1, 4)


def _left(box: Box) -> float:
    return box[0]


def _clip01(v: float) -> float:
    """`np.clip(v, 0.0, 1.0)` on one float, to the bit (NaN kept, -0.0 made 0.0)."""
    return 0.0 if v <= 0.0 else 1.0 if v >= 1.0 else v


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

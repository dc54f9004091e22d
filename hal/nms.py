"""Non-maximum suppression for merging tiled detections."""

from __future__ import annotations

import numpy as np


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.45, contain: float = 0.8) -> np.ndarray:
    """Indices of the boxes kept, best score first. A box is dropped when its IoU with a kept box exceeds
    `iou_threshold`, or when `contain` of the smaller box lies inside a kept one (a person cut in two by a
    tile edge is one person)."""
    b = np.asarray(boxes, dtype=np.float64)
    order = np.argsort(-np.asarray(scores), kind="stable")
    area = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        ix0 = np.maximum(b[i, 0], b[rest, 0])
        iy0 = np.maximum(b[i, 1], b[rest, 1])
        ix1 = np.minimum(b[i, 2], b[rest, 2])
        iy1 = np.minimum(b[i, 3], b[rest, 3])
        inter = np.maximum(ix1 - ix0, 0) * np.maximum(iy1 - iy0, 0)
        union = area[i] + area[rest] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
        smaller = np.minimum(area[i], area[rest])
        ios = np.where(smaller > 0, inter / np.where(smaller > 0, smaller, 1), 0)
        order = rest[(iou <= iou_threshold) & (ios <= contain)]
    return np.array(keep, dtype=np.int64)


def merge_tiles(boxes: np.ndarray, scores: np.ndarray, tile_of: np.ndarray, grid: np.ndarray,
                iou_threshold: float = 0.45, stitch: bool = False, fragments: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """Merge the detections of overlapping tiles: returns (indices kept, boxes), where a kept box may have
    grown. With `fragments`, a box cut by an inner edge of its tile that lies wholly inside a neighbouring
    tile, which saw the same place whole and found something there, goes: it is a piece of what the
    neighbour found (the legs of a person standing across the edge would otherwise be a second person with
    the same feet). With `stitch`, the two pieces of a person cut by a shared tile edge (one box ending on
    its tile's inner edge, the other starting on the neighbour's facing edge, lined up across it) become
    their union, at the better score. Then NMS as `nms`."""
    b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores)
    drop = np.zeros(len(b), dtype=bool)
    if len(b) > 1:
        grid = np.asarray(grid, dtype=np.float64)
        if fragments:
            drop |= _fragments(b, np.asarray(tile_of), grid)
        if stitch:
            drop |= _stitch(b, scores, np.asarray(tile_of), grid, drop)
    live = np.flatnonzero(~drop)
    return live[nms(b[live], scores[live], iou_threshold)], b


def _fragments(b: np.ndarray, tile_of: np.ndarray, grid: np.ndarray, eps: float = 0.02,
               cover: float = 0.4, aligned: float = 0.5) -> np.ndarray:
    """The mask of boxes cut by an inner tile edge, lying inside another tile that found something over
    at least `cover` of them."""
    t = grid[tile_of]
    tw, th = t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]
    across_x = ((b[:, 0] <= t[:, 0] + eps * tw) & (t[:, 0] > 0)) | ((b[:, 2] >= t[:, 2] - eps * tw) & (t[:, 2] < 1))
    across_y = ((b[:, 1] <= t[:, 1] + eps * th) & (t[:, 1] > 0)) | ((b[:, 3] >= t[:, 3] - eps * th) & (t[:, 3] < 1))
    cut = across_x | across_y
    area = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    drop = np.zeros(len(b), dtype=bool)
    for i in np.flatnonzero(cut & (area > 0)):
        # tiles that hold box i whole (a small tolerance for the box's own rounding)
        pad = eps * np.column_stack((-(grid[:, 2] - grid[:, 0]), -(grid[:, 3] - grid[:, 1]),
                                     grid[:, 2] - grid[:, 0], grid[:, 3] - grid[:, 1]))
        g = grid + pad
        holds = (g[:, 0] <= b[i, 0]) & (g[:, 1] <= b[i, 1]) & (g[:, 2] >= b[i, 2]) & (g[:, 3] >= b[i, 3])
        holds[tile_of[i]] = False
        others = np.flatnonzero(holds[tile_of])
        if not others.size:
            continue
        ix = np.maximum(np.minimum(b[others, 2], b[i, 2]) - np.maximum(b[others, 0], b[i, 0]), 0)
        iy = np.maximum(np.minimum(b[others, 3], b[i, 3]) - np.maximum(b[others, 1], b[i, 1]), 0)
        # the same thing: lined up with box i across the edge (interval IoU along it), covering much of it
        ux = np.maximum(b[others, 2], b[i, 2]) - np.minimum(b[others, 0], b[i, 0])
        uy = np.maximum(b[others, 3], b[i, 3]) - np.minimum(b[others, 1], b[i, 1])
        along = np.where(across_x[i], iy / np.maximum(uy, 1e-9), ix / np.maximum(ux, 1e-9))
        if np.any((ix * iy >= cover * area[i]) & (along >= aligned)):
            drop[i] = True
    return drop


def _stitch(b: np.ndarray, scores: np.ndarray, tile_of: np.ndarray, grid: np.ndarray, gone: np.ndarray,
            eps: float = 0.03, aligned: float = 0.5) -> np.ndarray:
    """Grow, in place, one box of each cut pair to the pair's union; the mask of boxes merged away."""
    t = grid[tile_of]
    tw, th = t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]
    cut_lo = np.column_stack((b[:, 0] <= t[:, 0] + eps * tw, b[:, 1] <= t[:, 1] + eps * th)) & (t[:, :2] > 0)
    cut_hi = np.column_stack((b[:, 2] >= t[:, 2] - eps * tw, b[:, 3] >= t[:, 3] - eps * th)) & (t[:, 2:] < 1)
    pairs: list[tuple[float, int, int]] = []
    for axis in (0, 1):  # 0: a vertical tile edge (pieces side by side), 1: a horizontal one (stacked)
        other = 1 - axis
        for i in np.flatnonzero(cut_hi[:, axis]).tolist():
            for j in np.flatnonzero(cut_lo[:, axis] & (tile_of != tile_of[i])).tolist():
                # j's tile starts inside i's tile, along this axis, and the pieces overlap across the edge
                if not (t[i, axis] < t[j, axis] < t[i, axis + 2] and b[j, axis] < b[i, axis + 2]):
                    continue
                lo = max(b[i, other], b[j, other])
                hi = min(b[i, other + 2], b[j, other + 2])
                span = max(b[i, other + 2], b[j, other + 2]) - min(b[i, other], b[j, other])
                if span > 0 and (hi - lo) / span >= aligned:
                    pairs.append((float((hi - lo) / span), i, j))
    drop = gone.copy()
    for _, i, j in sorted(pairs, reverse=True):
        if drop[i] or drop[j]:
            continue
        keep, gone_ = (i, j) if scores[i] >= scores[j] else (j, i)
        b[keep, :2] = np.minimum(b[i, :2], b[j, :2])
        b[keep, 2:] = np.maximum(b[i, 2:], b[j, 2:])
        drop[gone_] = True
    return drop & ~gone

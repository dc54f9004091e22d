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
                iou_threshold: float = 0.45, fragments: bool = True) -> np.ndarray:
    """Indices of the detections of overlapping tiles kept after merging, best score first. With
    `fragments`, a box cut by an inner edge of its tile that lies wholly inside a neighbouring tile, which saw
    the same place whole and found something lined up with it there, goes first: it is a piece of what the
    neighbour found (the legs of a person standing across a tile edge would otherwise be a second person
    with the same feet, and a second track). Then NMS as `nms`."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    live = np.arange(len(b))
    if fragments and len(b) > 1:
        live = np.flatnonzero(~_fragments(b, np.asarray(tile_of), np.asarray(grid, dtype=np.float64)))
    return live[nms(b[live], np.asarray(scores)[live], iou_threshold)]


def _fragments(b: np.ndarray, tile_of: np.ndarray, grid: np.ndarray, eps: float = 0.02,
               cover: float = 0.4, aligned: float = 0.5) -> np.ndarray:
    """The mask of boxes cut by an inner tile edge (within `eps` of a tile's size) that lie inside another
    tile, where that tile found a box covering at least `cover` of theirs and lined up with it along the cut
    (IoU of their extents along the edge at least `aligned`)."""
    t = grid[tile_of]
    tw, th = t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]
    across_x = ((b[:, 0] <= t[:, 0] + eps * tw) & (t[:, 0] > 0)) | ((b[:, 2] >= t[:, 2] - eps * tw) & (t[:, 2] < 1))
    across_y = ((b[:, 1] <= t[:, 1] + eps * th) & (t[:, 1] > 0)) | ((b[:, 3] >= t[:, 3] - eps * th) & (t[:, 3] < 1))
    cut = np.flatnonzero((across_x | across_y) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))
    if not cut.size:
        return np.zeros(len(b), dtype=bool)
    gw, gh = grid[:, 2] - grid[:, 0], grid[:, 3] - grid[:, 1]
    c = b[cut, None, :]  # (cut, 1, 4) against the grid, then against every box
    holds = ((grid[None, :, 0] - eps * gw <= c[..., 0]) & (grid[None, :, 1] - eps * gh <= c[..., 1])
             & (grid[None, :, 2] + eps * gw >= c[..., 2]) & (grid[None, :, 3] + eps * gh >= c[..., 3]))
    other = holds[:, tile_of] & (tile_of[None, :] != tile_of[cut, None])  # (cut, N): boxes of tiles holding it
    ix = np.maximum(np.minimum(b[None, :, 2], c[..., 2]) - np.maximum(b[None, :, 0], c[..., 0]), 0)
    iy = np.maximum(np.minimum(b[None, :, 3], c[..., 3]) - np.maximum(b[None, :, 1], c[..., 1]), 0)
    ux = np.maximum(b[None, :, 2], c[..., 2]) - np.minimum(b[None, :, 0], c[..., 0])
    uy = np.maximum(b[None, :, 3], c[..., 3]) - np.minimum(b[None, :, 1], c[..., 1])
    along = np.where(across_x[cut, None], iy / np.maximum(uy, 1e-12), ix / np.maximum(ux, 1e-12))
    area = ((c[..., 2] - c[..., 0]) * (c[..., 3] - c[..., 1]))
    drop = np.zeros(len(b), dtype=bool)
    drop[cut] = np.any(other & (ix * iy >= cover * area) & (along >= aligned), axis=1)
    return drop

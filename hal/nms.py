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

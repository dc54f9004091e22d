"""MOTChallenge scoring (MOTA, IDF1, HOTA) with the TrackEval metrics as Roboflow's `trackers.eval` ships
them (a maintained port of TrackEval's CLEAR, Identity and HOTA code for numpy 2), IoU similarity on boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from firmware.sensing.tracker import iou_matrix


def load_gt(path: Path) -> np.ndarray:
    """Rows (frame, id, x, y, w, h) that count: MOT16+ files keep only considered pedestrians; MOT15 files
    (10 columns, world coordinates) are taken whole."""
    raw = np.loadtxt(path, delimiter=",", ndmin=2)
    if raw.shape[1] == 9:
        raw = raw[(raw[:, 6] != 0) & (raw[:, 7] == 1)]
    return raw[:, :6]


def score(rows: np.ndarray | list, gt: np.ndarray) -> dict[str, float]:
    """`rows`: tracker output (frame, id, x, y, w, h); `gt`: ground truth in the same form."""
    from trackers.eval import compute_clear_metrics, compute_hota_metrics, compute_identity_metrics

    res = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 6)
    frames = np.union1d(np.unique(gt[:, 0]), np.unique(res[:, 0])).astype(int)
    _, gt_ids = np.unique(gt[:, 1], return_inverse=True)
    _, tr_ids = np.unique(res[:, 1], return_inverse=True)
    g_by, r_by = _split(gt, frames), _split(res, frames)
    gid_by, rid_by = _split(gt_ids, frames, gt[:, 0]), _split(tr_ids, frames, res[:, 0])
    sims = [iou_matrix(_xyxy(g[:, 2:6]), _xyxy(r[:, 2:6])) for g, r in zip(g_by, r_by, strict=True)]
    clear = compute_clear_metrics(gid_by, rid_by, sims)
    ident = compute_identity_metrics(gid_by, rid_by, sims)
    hota = compute_hota_metrics(gid_by, rid_by, sims)
    return {
        "MOTA": float(clear["MOTA"]),
        "IDF1": float(ident["IDF1"]),
        "HOTA": float(hota["HOTA"]),
        "IDSW": float(clear["IDSW"]),
        "recall": float(clear["CLR_Re"]),
        "precision": float(clear["CLR_Pr"]),
        # (the breakdown: what a tracker gets wrong, not only how much)
        "FP": float(clear["CLR_FP"]),
        "FN": float(clear["CLR_FN"]),
        "Frag": float(clear["Frag"]),
        "DetA": float(np.mean(hota["DetA"])),
        "AssA": float(np.mean(hota["AssA"])),
        "ids": float(len(np.unique(res[:, 1]))),
    }


def _split(values: np.ndarray, frames: np.ndarray, keys: np.ndarray | None = None) -> list[np.ndarray]:
    keys = values[:, 0] if keys is None else keys
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    lo = np.searchsorted(keys, frames, "left")
    hi = np.searchsorted(keys, frames, "right")
    return [values[a:b] for a, b in zip(lo, hi, strict=True)]


def _xyxy(xywh: np.ndarray) -> np.ndarray:
    return np.hstack((xywh[:, :2], xywh[:, :2] + xywh[:, 2:4]))

"""Ground-plane calibration: fit the image-to-ground homography from pairs of image foot points and world
coordinates (as MOT15 ground truth carries them, e.g. PETS09-S2L1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware.errors import CalibrationError


@dataclass(frozen=True, slots=True)
class HomographyFit:
    homography: tuple[tuple[float, float, float], ...]
    points: int
    median_error_m: float
    p95_error_m: float


def fit_homography(image_pts: np.ndarray, ground_pts: np.ndarray) -> HomographyFit:
    import cv2

    img = np.asarray(image_pts, dtype=np.float64).reshape(-1, 2)
    gnd = np.asarray(ground_pts, dtype=np.float64).reshape(-1, 2)
    if len(img) < 4 or len(img) != len(gnd):
        raise CalibrationError(f"need at least 4 matching point pairs, got {len(img)} and {len(gnd)}")
    h, _mask = cv2.findHomography(img, gnd, cv2.RANSAC, 0.5)
    if h is None:
        raise CalibrationError("the points do not determine a homography (are they collinear?)")
    proj = cv2.perspectiveTransform(img[None], h)[0]
    err = np.linalg.norm(proj - gnd, axis=1)
    return HomographyFit(
        tuple((float(row[0]), float(row[1]), float(row[2])) for row in h), len(img),
        float(np.median(err)), float(np.percentile(err, 95)),
    )


def fit_homography_from_mot(gt_path: Path) -> HomographyFit:
    """MOT15 gt rows: frame, id, x, y, w, h, conf, world_x, world_y, world_z."""
    try:
        gt = np.loadtxt(gt_path, delimiter=",", ndmin=2)
    except (OSError, ValueError) as e:
        raise CalibrationError(f"cannot read {gt_path} as MOTChallenge gt: {e}") from e
    if gt.shape[1] < 9:
        raise CalibrationError(f"{gt_path} has no world coordinates (columns 8-9); it cannot calibrate")
    world = gt[:, 7:9]
    keep = np.all(np.isfinite(world), axis=1) & np.any(world != -1, axis=1)
    if not keep.any():
        raise CalibrationError(f"{gt_path}: every world coordinate is missing (-1)")
    gt = gt[keep]
    feet = np.column_stack((gt[:, 2] + gt[:, 4] / 2, gt[:, 3] + gt[:, 5]))
    return fit_homography(feet, gt[:, 7:9])

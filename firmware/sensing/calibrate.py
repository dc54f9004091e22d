"""Ground-plane calibration: fit the image-to-ground homography from pairs of image foot points and world
coordinates: an installer's measured point pairs (`fit_point_pairs`, a least-squares fit over every pair,
refused past MAX_MEDIAN_ERROR_M) or MOT15 ground truth, which carries world coordinates (PETS09-S2L1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware.errors import CalibrationError

MAX_MEDIAN_ERROR_M = 0.25  # a fit from point pairs whose median ground error is larger is refused
MIN_SPREAD = 1e-3  # smallest/largest singular value of centred points below this: they lie on a line


@dataclass(frozen=True, slots=True)
class HomographyFit:
    homography: tuple[tuple[float, float, float], ...]
    points: int
    median_error_m: float
    p95_error_m: float
    errors_m: tuple[float, ...] = ()  # per point, for fits from point pairs


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


def _collinear(pts: np.ndarray) -> bool:
    c = pts - pts.mean(axis=0)
    s = np.linalg.svd(c, compute_uv=False)
    return bool(s[0] == 0 or s[1] / s[0] < MIN_SPREAD)


def _three_on_a_line(pts: np.ndarray) -> bool:
    from itertools import combinations

    return any(_collinear(pts[list(t)]) for t in combinations(range(len(pts)), 3))


def fit_point_pairs(image_pts, ground_pts, max_median_m: float = MAX_MEDIAN_ERROR_M) -> HomographyFit:
    """The homography taking image pixels to ground metres, least squares over every pair (no outlier is
    dropped: each point's ground error is reported). Raises CalibrationError for fewer than 4 pairs, points
    on one line (or, with exactly 4, three of them on one line), or a median error above `max_median_m`."""
    import cv2

    img = np.asarray(image_pts, dtype=np.float64).reshape(-1, 2)
    gnd = np.asarray(ground_pts, dtype=np.float64).reshape(-1, 2)
    if len(img) != len(gnd):
        raise CalibrationError(f"{len(img)} image points but {len(gnd)} ground points: give them in pairs")
    if len(img) < 4:
        raise CalibrationError(f"need at least 4 point pairs (image x, y and ground X, Y), got {len(img)}")
    if not (np.all(np.isfinite(img)) and np.all(np.isfinite(gnd))):
        raise CalibrationError("every coordinate must be a finite number")
    for name, pts in (("image", img), ("ground", gnd)):
        if _collinear(pts) or (len(pts) == 4 and _three_on_a_line(pts)):
            raise CalibrationError(f"the {name} points lie on one line (or three of four do): a homography needs "
                                   f"points spread over the floor, e.g. the corners of a large rectangle")
    h, _ = cv2.findHomography(img, gnd, 0)
    if h is None or not np.all(np.isfinite(h)):
        raise CalibrationError("the point pairs do not determine a homography")
    err = np.linalg.norm(cv2.perspectiveTransform(img[None], h)[0] - gnd, axis=1)
    fit = HomographyFit(tuple((float(r[0]), float(r[1]), float(r[2])) for r in h), len(img),
                        float(np.median(err)), float(np.percentile(err, 95)), tuple(float(e) for e in err))
    if fit.median_error_m > max_median_m:
        raise CalibrationError(f"median ground error {fit.median_error_m:.3f} m is above the bound of "
                               f"{max_median_m} m: re-measure the points (errors per point: "
                               + ", ".join(f"{e:.2f}" for e in err) + " m)")
    return fit


def read_point_pairs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A CSV of `x, y, X, Y` rows (image pixels, ground metres); '#' comments and a header row allowed."""
    rows: list[list[float]] = []
    header_seen = False
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CalibrationError(f"cannot read {path}: {e}") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        cells = [c.strip() for c in line.replace(";", ",").split(",")]
        try:
            vals = [float(c) for c in cells]
        except ValueError:
            if not rows and not header_seen:
                header_seen = True
                continue  # a header row
            raise CalibrationError(f"{path}:{n}: expected four numbers x, y, X, Y, got {line!r}") from None
        if len(vals) != 4:
            raise CalibrationError(f"{path}:{n}: expected four numbers x, y, X, Y, got {len(vals)}")
        rows.append(vals)
    a = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return a[:, :2], a[:, 2:]


def fit_homography_from_mot(gt_path: Path) -> HomographyFit:
    """MOT15 gt rows: frame, id, x, y, w, h, conf, world_x, world_y, world_z (10 columns). MOT16/17 gt has
    9 (frame, id, x, y, w, h, flag, class, visibility): no world coordinates, refused."""
    try:
        gt = np.loadtxt(gt_path, delimiter=",", ndmin=2)
    except (OSError, ValueError) as e:
        raise CalibrationError(f"cannot read {gt_path} as MOTChallenge gt: {e}") from e
    if gt.shape[1] < 10:
        raise CalibrationError(
            f"{gt_path} has {gt.shape[1]} columns, not MOT15's 10: MOT16/17 gt ends in class and visibility "
            f"(columns 8-9), not world coordinates, so it cannot calibrate; use `umbra calibrate --points` with "
            f"measured point pairs")
    world = gt[:, 7:9]
    keep = np.all(np.isfinite(world), axis=1) & np.any(world != -1, axis=1)
    if not keep.any():
        raise CalibrationError(f"{gt_path}: every world coordinate is missing (-1)")
    gt = gt[keep]
    feet = np.column_stack((gt[:, 2] + gt[:, 4] / 2, gt[:, 3] + gt[:, 5]))
    return fit_homography(feet, gt[:, 7:9])

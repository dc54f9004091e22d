"""`umbra calibrate`: the image-to-ground homography, from measured point pairs or from MOT15 ground truth.

    umbra calibrate --points pairs.csv [--max-median-m 0.25]   # rows: x, y (image px), X, Y (ground m)
    umbra calibrate --gt mot/MOT15/PETS09-S2L1/gt/gt.txt       # gt with world coordinates (MOT15 only)

Prints the ground error of each point pair and their median, then the [geometry] homography to paste (or
save from the installer page). Refused, with exit code 2: fewer than four pairs, points on one line, a
median error above the bound, gt without world coordinates (MOT16/17)."""

from __future__ import annotations

import argparse
from pathlib import Path

from firmware.sensing.calibrate import (
    MAX_MEDIAN_ERROR_M,
    HomographyFit,
    fit_homography_from_mot,
    fit_point_pairs,
    read_point_pairs,
)


def add_parser(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--points", type=Path, help="CSV of x, y, X, Y rows: image pixels and ground metres")
    src.add_argument("--gt", type=Path, help="MOT15 gt.txt whose last columns are world coordinates")
    parser.add_argument("--max-median-m", type=float, default=MAX_MEDIAN_ERROR_M,
                        help=f"refuse a fit whose median ground error is above this (default {MAX_MEDIAN_ERROR_M} m)")
    parser.set_defaults(func=_cmd_calibrate)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    if args.points is not None:
        img, gnd = read_point_pairs(args.points)
        fit = fit_point_pairs(img, gnd, args.max_median_m)
        print(f"# {fit.points} point pairs, least squares over all of them; ground error per point:")
        for i, ((x, y), (gx, gy), e) in enumerate(zip(img, gnd, fit.errors_m, strict=True), 1):
            print(f"#   {i:3d}  image ({x:.1f}, {y:.1f}) -> ground ({gx:.2f}, {gy:.2f}) m: error {e:.3f} m")
        note = " (4 pairs fit exactly: measure more to see the error)" if fit.points == 4 else ""
        print(f"# median {fit.median_error_m:.3f} m (bound {args.max_median_m} m), p95 {fit.p95_error_m:.3f} m{note}")
    else:
        fit = fit_homography_from_mot(args.gt)
        print(f"# fitted on {fit.points} foot points; ground error median {fit.median_error_m:.3f} m, "
              f"p95 {fit.p95_error_m:.3f} m")
    print(geometry_toml(fit))
    return 0


def geometry_toml(fit: HomographyFit) -> str:
    rows = ", ".join("[" + ", ".join(f"{v:.10g}" for v in row) + "]" for row in fit.homography)
    return f"[geometry]\nhomography = [{rows}]"

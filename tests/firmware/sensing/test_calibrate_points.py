"""Calibration from point pairs: the PETS09 homography reproduced from twelve measured pairs within the
stated bound; fewer than four pairs, collinear points, a bad fit and MOT16/17 gt refused with a clear message."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.cli.main import main
from firmware.sensing.calibrate import (
    MAX_MEDIAN_ERROR_M,
    CalibrationError,
    fit_homography_from_mot,
    fit_point_pairs,
)

ROOT = Path(__file__).resolve().parents[3]


def _project(h, pts):
    hom = np.column_stack((pts, np.ones(len(pts)))) @ np.asarray(h).T
    return hom[:, :2] / hom[:, 2:]


@pytest.fixture(scope="module")
def pets(shared_data: Path):
    gt = np.loadtxt(shared_data / "mot/MOT15/PETS09-S2L1/gt/gt.txt", delimiter=",")
    feet = np.column_stack((gt[:, 2] + gt[:, 4] / 2, gt[:, 3] + gt[:, 5]))
    h = tomllib.loads((ROOT / "bench/configs/pets09.toml").read_text())["geometry"]["homography"]
    return feet, gt[:, 7:9], np.asarray(h)


def test_twelve_point_pairs_reproduce_the_pets09_homography_within_the_bound(pets, tmp_path, capsys) -> None:
    feet, world, h = pets
    idx = np.linspace(0, len(feet) - 1, 12).astype(int)  # twelve foot points spread over the sequence
    csv = tmp_path / "pairs.csv"
    csv.write_text("x,y,X,Y  # header\n" + "".join(f"{a:.2f},{b:.2f},{c:.3f},{d:.3f}\n"
                                                    for (a, b), (c, d) in zip(feet[idx], world[idx], strict=True)))
    assert main(["calibrate", "--points", str(csv)]) == 0
    out = capsys.readouterr().out
    assert out.count("error") >= 12 and "median" in out and "homography = [[" in out
    fit = fit_point_pairs(feet[idx], world[idx])
    assert fit.median_error_m <= MAX_MEDIAN_ERROR_M
    diff = np.linalg.norm(_project(fit.homography, feet) - _project(h, feet), axis=1)
    # over all 4,650 gt foot points, the fitted and the bench homography agree within the bound
    assert np.median(diff) <= MAX_MEDIAN_ERROR_M and np.percentile(diff, 95) <= MAX_MEDIAN_ERROR_M


def test_fewer_than_four_pairs_are_refused(tmp_path, capsys) -> None:
    csv = tmp_path / "three.csv"
    csv.write_text("0,0,0,0\n100,0,1,0\n0,100,0,1\n")
    assert main(["calibrate", "--points", str(csv)]) == 2
    assert "at least 4 point pairs" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["image", "ground"])
def test_collinear_points_are_refused(which: str) -> None:
    line = np.array([[0, 0], [10, 10], [20, 20], [30, 30], [45, 45]], float)
    spread = np.array([[0, 0], [100, 0], [100, 80], [0, 80], [50, 40]], float)
    img, gnd = (line, spread) if which == "image" else (spread, line)
    with pytest.raises(CalibrationError, match=f"the {which} points lie on one line"):
        fit_point_pairs(img, gnd)


def test_three_of_four_on_a_line_is_refused() -> None:
    with pytest.raises(CalibrationError, match="three of four"):
        fit_point_pairs([[0, 0], [50, 0], [100, 0], [0, 80]], [[0, 0], [1, 0], [2, 0], [0, 2]])


def test_a_fit_past_the_bound_is_refused(pets) -> None:
    feet, world, _ = pets
    idx = np.linspace(0, len(feet) - 1, 8).astype(int)
    wrong = world[idx].copy()
    wrong[::2] += 1.5  # half the ground points mis-measured by 1.5 m
    with pytest.raises(CalibrationError, match="above the bound"):
        fit_point_pairs(feet[idx], wrong)


def test_mot17_gt_is_refused_instead_of_a_homography_3_m_wrong(shared_data: Path, capsys) -> None:
    gt = shared_data / "mot/MOT17/MOT17-09-FRCNN/gt/gt.txt"
    with pytest.raises(CalibrationError, match="MOT16/17 gt ends in class and visibility"):
        fit_homography_from_mot(gt)
    assert main(["calibrate", "--gt", str(gt)]) == 2
    assert "not world coordinates" in capsys.readouterr().err


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1000), st.floats(0, 1000)), min_size=4, max_size=12))
def test_any_exact_homography_is_recovered_or_refused_clearly(pts) -> None:
    img = np.array(pts)
    h = np.array([[0.02, 0.001, -3.0], [0.0005, 0.03, -2.0], [1e-5, 2e-4, 1.0]])
    try:
        fit = fit_point_pairs(img, _project(h, img))
    except CalibrationError as e:
        assert "line" in str(e) or "determine" in str(e) or "bound" in str(e)
        return
    assert fit.median_error_m < 0.01

"""bench.demographics_chains: a person whose detections stop for longer than the join time forms two chains (two
counts, L1 2), one seen throughout or lost only briefly forms one; the bound is the least m covering the share."""

from __future__ import annotations

import numpy as np

from bench.demographics_chains import least_m, measure

FPS = 10.0


def _walk(gap: tuple[int, int]) -> tuple[list[np.ndarray], np.ndarray]:
    """One person (gt id 1, 40 x 100 px) walking right for 12 s; no detection on frames gap[0]..gap[1]."""
    gt, dets = [], []
    for f in range(1, 121):
        x = 50 + 4 * f
        gt.append([f, 1, x, 200, 40, 100])
        dets.append(np.zeros((0, 5)) if gap[0] <= f <= gap[1] else np.array([[x, 200, x + 40, 300, 0.9]]))
    return dets, np.array(gt, float)


def test_a_person_lost_for_longer_than_the_join_time_forms_two_chains():
    dets, gt = _walk((40, 80))  # 4 s unseen: the tracker's track ends, the newborn is past the join time
    c = measure(dets, gt, FPS, (1280, 720), [60])[60]
    assert c.own.tolist() == [2] and c.crop.tolist() == [2] and c.l1.tolist() == [2]


def test_a_person_seen_throughout_or_lost_briefly_forms_one():
    for gap in ((0, 0), (40, 44)):
        dets, gt = _walk(gap)
        c = measure(dets, gt, FPS, (1280, 720), [60])[60]
        assert c.own.tolist() == [1] and c.l1.tolist() == [1], gap


def test_windows_count_apart():
    dets, gt = _walk((0, 0))
    c = measure(dets, gt, FPS, (1280, 720), [10])[10]  # 12 s in 10 s windows: one chain in each
    assert c.own.tolist() == [1, 1]


def test_the_bound_is_the_least_m_covering_the_share():
    assert least_m(np.array([1] * 98 + [2, 5])) == 2  # 99 of 100 at 2 or fewer
    assert least_m(np.array([1] * 99 + [5])) == 1
    assert least_m(np.array([1, 3]), cover=1.0) == 3

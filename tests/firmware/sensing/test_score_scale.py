"""Score thresholds that follow the detector's own scale (firmware.sensing.score_scale), and matching buffered by
the prediction's uncertainty (firmware.sensing.tracker.buffered_iou)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.config.sensing import TrackerConfig
from firmware.sensing.score_scale import ScoreScale
from firmware.sensing.tracker import Tracker, buffered_iou, iou_matrix


def test_quantiles_follow_the_samples_and_forget_old_ones():
    rng = np.random.default_rng(0)
    s = ScoreScale(window=500, min_samples=50)
    assert not s.ready
    s.add(rng.beta(9, 1.6, 40))
    assert not s.ready
    s.add(rng.beta(9, 1.6, 960))
    assert s.ready
    ref = rng.beta(9, 1.6, 200_000)
    for q in (0.1, 0.3, 0.5, 0.9):
        assert s.quantile(q) == pytest.approx(float(np.quantile(ref, q)), abs=0.02)
    s.add(np.clip(rng.normal(0.4, 0.05, 5000), 0, 1))  # a new detector: the old samples fade
    assert s.quantile(0.5) == pytest.approx(0.4, abs=0.02)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-0.5, 1.5), min_size=1, max_size=300), st.floats(0, 1), st.floats(0, 1))
def test_quantile_is_a_score_and_grows_with_q(scores, q1, q2):
    s = ScoreScale(min_samples=1)
    s.add(np.array(scores))
    lo, hi = sorted((q1, q2))
    assert 0.0 <= s.quantile(lo) <= s.quantile(hi) <= 1.0


def test_a_tracker_with_adaptive_scores_moves_its_thresholds_to_the_detector():
    # Ten walkers seen every tick with scores around 0.9: the learned high and birth thresholds rise well
    # above the fixed 0.5 and 0.7; with fixed thresholds they stay.
    rng = np.random.default_rng(1)
    adaptive = Tracker(TrackerConfig(adaptive_scores=True, high_quantile=0.1, birth_quantile=0.3))
    fixed = Tracker(TrackerConfig())
    for t in range(60):
        boxes = np.array([[50 + 60 * i + t, 100, 90 + 60 * i + t, 200] for i in range(10)], float)
        scores = np.clip(rng.normal(0.9, 0.03, 10), 0, 1)
        adaptive.update(boxes, scores, 0.1)
        fixed.update(boxes, scores, 0.1)
    assert float(adaptive._limits.high_score) > 0.8 and float(adaptive._limits.new_track_score) > 0.85
    assert float(fixed._limits.high_score) == 0.5 and float(fixed._limits.new_track_score) == 0.7


def test_buffered_iou_is_the_iou_without_a_buffer_and_overlaps_more_with_one():
    a = np.array([[0, 0, 10, 20], [100, 100, 120, 140]], float)
    b = np.array([[12, 0, 22, 20], [5, 5, 15, 25]], float)
    wh = lambda x: x[:, 2:] - x[:, :2]  # noqa: E731
    np.testing.assert_allclose(buffered_iou(a, b, wh(a), wh(b), np.zeros((2, 2))), iou_matrix(a, b))
    grown = buffered_iou(a, b, wh(a), wh(b), np.full((2, 2), 3.0))
    assert iou_matrix(a, b)[0, 0] == 0 and grown[0, 0] > 0  # a gap of 2 px is bridged by 3 px each side
    assert grown[1].max() == 0  # far apart stays apart


def test_at_a_quarter_rate_a_buffered_gate_keeps_a_fast_walker_on_one_track():
    # A walker 40 px wide moving 30 px a tick: plain IoU of a newborn's (motionless) prediction with its second
    # sighting is 0.14, under the newborn's least IoU (0.3), so every sighting starts a new track that dies.
    def ids(cfg: TrackerConfig) -> set[int]:
        tr, out = Tracker(cfg), set()
        for t in range(20):
            box = np.array([[10 + 30 * t, 100, 50 + 30 * t, 200]], float)
            out |= {x.track_id for x in tr.update(box, np.array([0.9]), 0.5)}
        return out

    assert len(ids(TrackerConfig(gate_sigma=0.0, newborn_sigma=0.0))) == 0  # never confirmed
    assert len(ids(TrackerConfig(gate_sigma=1.0, newborn_sigma=0.0))) == 1
    # The defaults: only the newborn's gate follows its own uncertainty (its speed prior over the half second).
    assert len(ids(TrackerConfig())) == 1
    assert len(ids(TrackerConfig(newborn_sigma=1.0))) == 1


def test_the_newborn_gate_widens_with_the_frame_interval_and_leaves_far_detections_apart():
    # One sighting, then the next 60 px on (a 40 px wide, 100 px tall box): at 30 fps no walker gets that far
    # (the newborn's deviation after 1/30 s is about 12 px: the second box starts a track of its own), in the
    # half second between two frames at 2 fps one does (its deviation is then about a box height).
    def confirmed(dt: float, shift: float) -> int:
        tr = Tracker(TrackerConfig())
        tr.update(np.array([[10, 100, 50, 200]], float), np.array([0.9]), dt)
        out = tr.update(np.array([[10 + shift, 100, 50 + shift, 200]], float), np.array([0.9]), dt)
        return len(out)

    assert confirmed(0.5, 60.0) == 1
    assert confirmed(1 / 30, 60.0) == 0
    assert confirmed(0.5, 400.0) == 0  # far beyond a walker's half second


def test_new_settings_are_checked():
    for bad in (dict(high_quantile=1.5), dict(birth_quantile=-0.1), dict(gate_sigma=-1.0), dict(score_samples=0),
                dict(newborn_sigma=-1.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrackerConfig(**bad).validate()

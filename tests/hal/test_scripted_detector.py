"""The scripted detector replays ground truth with the real detector's measured errors, deterministically."""

from __future__ import annotations

import numpy as np
import pytest

from bench.lib.scripted import scripted_detections
from bench.scripted_calibration import measure
from hal.errors import DetectorError
from hal.frame import Frame
from hal.scripted import PERFECT, DetectorErrors, ScriptedDetector


def frame(seq: int, size=(768, 576)) -> Frame:
    return Frame(np.ones((2, 2, 3), np.uint8), None, 0, seq, size)


@pytest.fixture(scope="module")
def pets_gt(shared_data):
    return shared_data / "mot/MOT15/PETS09-S2L1/gt/gt.txt"


def test_errors_match_what_the_real_detector_was_measured_to_make(pets_gt):
    # Figures of the real SSD as the bench run tiles it (3x2, overlap 0.3) on PETS09, from
    # bench.scripted_calibration: miss 0.122, miss run 2.57 frames, jitter 0.126, 4.94 false positives per
    # frame, true score 0.684, false score 0.421.
    gt = np.loadtxt(pets_gt, delimiter=",", ndmin=2)
    m = measure(scripted_detections(pets_gt, 795), gt, threshold=0.3)
    assert m["miss_rate"] == pytest.approx(0.122, abs=0.03)
    assert m["jitter"] == pytest.approx(0.126, abs=0.02)
    assert m["fp_per_frame"] == pytest.approx(4.94, abs=0.5)
    assert m["tp_score_mean"] == pytest.approx(0.684, abs=0.02)
    assert m["fp_score_mean"] == pytest.approx(0.421, abs=0.03)
    assert m["miss_run"] > 1.5  # misses come in runs, as occlusions do


def test_perfect_replay_returns_the_ground_truth(pets_gt):
    det = ScriptedDetector.from_mot(pets_gt, errors=PERFECT)
    gt = np.loadtxt(pets_gt, delimiter=",", ndmin=2)
    d = det.detect(frame(1))
    rows = gt[gt[:, 0] == 1]
    assert len(d) == len(rows)
    px = d.to_pixels(768, 576)
    np.testing.assert_allclose(np.sort(px[:, 0]), np.sort(rows[:, 2]), atol=0.1)


def test_replay_is_deterministic_and_independent_of_call_order(pets_gt):
    a = ScriptedDetector.from_mot(pets_gt, seed=7)
    b = ScriptedDetector.from_mot(pets_gt, seed=7)
    forward = [a.detect(frame(s)).boxes for s in (5, 6, 7)]
    backward = [b.detect(frame(s)).boxes for s in (7, 6, 5)][::-1]
    for x, y in zip(forward, backward, strict=True):
        np.testing.assert_array_equal(x, y)
    c = ScriptedDetector.from_mot(pets_gt, seed=8)
    assert not np.array_equal(c.detect(frame(5)).boxes, forward[0])


def test_loop_wraps_and_without_it_the_end_is_empty(pets_gt):
    looping = ScriptedDetector.from_mot(pets_gt, errors=PERFECT, loop=True)
    once = ScriptedDetector.from_mot(pets_gt, errors=PERFECT)
    assert len(looping.detect(frame(795 + 3))) == len(once.detect(frame(3)))
    assert len(once.detect(frame(795 + 3))) == 0


def test_faults_a_released_frame_and_a_scripted_failure(pets_gt):
    det = ScriptedDetector.from_mot(pets_gt, fail_on=frozenset({4}))
    with pytest.raises(DetectorError, match="frame 4"):
        det.detect(frame(4))
    f = frame(5)
    f.release()
    with pytest.raises(Exception, match="released"):
        det.detect(f)


def test_mot17_rows_that_do_not_count_are_left_out(shared_data):
    gt = shared_data / "mot/MOT17/MOT17-09-FRCNN/gt/gt.txt"
    raw = np.loadtxt(gt, delimiter=",", ndmin=2)
    det = ScriptedDetector.from_mot(gt, errors=PERFECT)
    want = raw[(raw[:, 0] == 1) & (raw[:, 6] != 0) & (raw[:, 7] == 1)]
    assert len(det.detect(frame(1, det.source_size))) == len(want)
    assert det.source_size == (1920, 1080)


def test_bad_inputs_are_refused(tmp_path):
    bad = tmp_path / "gt.txt"
    bad.write_text("this is not,a gt file\n")
    with pytest.raises(DetectorError, match="gt.txt"):
        ScriptedDetector.from_mot(bad, source_size=(640, 480))
    with pytest.raises(ValueError, match="miss_rate"):
        DetectorErrors(miss_rate=1.5).validate()

"""The second scripted detector (hal.crowd): its own laws of misses, jitter, clutter and scores, seeded."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal.crowd import CrowdDetector, CrowdErrors, occlusion
from hal.detector import Detector
from hal.errors import DetectorError
from hal.frame import Frame

SIZE = (1000, 600)
QUIET = CrowdErrors(clutter_rate=0.0, part_chance=0.0, part_crowd=0.0)


def frame(seq: int) -> Frame:
    return Frame(np.ones((2, 2, 3), np.uint8), None, 0, seq, SIZE)


def walkers(frames: int, people: int, spacing: float = 45.0, visibility: float | None = None) -> np.ndarray:
    """`people` walkers in a row, side by side, each 40x100 px, walking right at 0.5 px a frame."""
    rows = []
    for f in range(1, frames + 1):
        for p in range(people):
            row = [f, p + 1, 20 + p * spacing + 0.5 * f, 300, 40, 100]
            rows.append(row + ([visibility] if visibility is not None else []))
    return np.array(rows, float)


def found(det: CrowdDetector, gt: np.ndarray) -> np.ndarray:
    """(frames, people) whether each gt box has a detection of IoU >= 0.5."""
    from firmware.sensing.tracker import iou_matrix

    people = int(gt[:, 1].max())
    out = np.zeros((det.frames, people), bool)
    for f in range(1, det.frames + 1):
        g = gt[gt[:, 0] == f]
        gb = np.column_stack((g[:, 2], g[:, 3], g[:, 2] + g[:, 4], g[:, 3] + g[:, 5]))
        d = det.detect(frame(f)).to_pixels(*SIZE)
        if len(d):
            out[f - 1, g[:, 1].astype(int) - 1] = iou_matrix(gb, d).max(1) >= 0.5
    return out


def test_it_is_a_detector_and_seeded_whatever_the_order_of_frames():
    gt = walkers(40, 5)
    a, b = CrowdDetector(gt, SIZE, 10.0, seed=3), CrowdDetector(gt, SIZE, 10.0, seed=3)
    assert isinstance(a, Detector)
    fwd = [a.detect(frame(s)).boxes for s in (4, 5, 6)]
    back = [b.detect(frame(s)).boxes for s in (6, 5, 4)][::-1]
    for x, y in zip(fwd, back, strict=True):
        np.testing.assert_array_equal(x, y)
    other = CrowdDetector(gt, SIZE, 10.0, seed=4)
    assert not all(np.array_equal(x, other.detect(frame(s)).boxes) for x, s in zip(fwd, (4, 5, 6), strict=True))
    assert len(a.detect(frame(41))) == 0 and len(a.detect(frame(0))) == 0


def test_misses_are_shared_by_neighbours_not_independent():
    # Ten people side by side, all fully visible and apart: ScriptedDetector would miss each on its own; here
    # the difficulty field makes neighbours' misses go together.
    gt = walkers(600, 10, spacing=50.0)
    still = CrowdErrors(clutter_rate=0.0, part_chance=0.0, part_crowd=0.0, jitter=0.0)
    hit = found(CrowdDetector(gt, SIZE, 10.0, errors=still, seed=1), gt)
    miss = ~hit[:, :-1] & ~hit[:, 1:]  # both of a pair of neighbours missed on the same frame
    p = (~hit).mean()
    assert 0.03 < p < 0.4
    assert miss.mean() > 1.5 * p * p  # far more joint misses than independence would give


def test_occluded_people_are_missed_more_and_score_lower():
    clear = walkers(300, 4, spacing=80.0, visibility=1.0)
    hidden = walkers(300, 4, spacing=80.0, visibility=0.2)
    d_clear = CrowdDetector(clear, SIZE, 10.0, errors=QUIET, seed=2)
    d_hidden = CrowdDetector(hidden, SIZE, 10.0, errors=QUIET, seed=2)
    assert found(d_hidden, hidden).mean() < 0.5 * found(d_clear, clear).mean()
    s_clear = np.concatenate([d_clear.detect(frame(f)).scores for f in range(1, 301)])
    s_hidden = np.concatenate([d_hidden.detect(frame(f)).scores for f in range(1, 301)])
    assert s_hidden.mean() < s_clear.mean() - 0.1
    assert 0.75 < s_clear.mean() < 0.95  # Beta(9, 1.6): another scale than the SSD's 0.68


def test_a_person_close_behind_another_is_often_merged_into_them():
    def pair(dx: float, dy: float) -> float:  # mean detections a frame of two fully visible people
        rows = []
        for f in range(1, 301):
            rows += [[f, 1, 100, 300, 40, 100, 1.0], [f, 2, 100 + dx, 300 + dy, 40, 100, 1.0]]
        det = CrowdDetector(np.array(rows, float), SIZE, 10.0, errors=QUIET, seed=5)
        return float(np.mean([len(det.detect(frame(f))) for f in range(1, 301)]))

    apart, close = pair(200, 0), pair(8, -10)  # close: 2 stands just behind 1 (higher bottom edge)
    assert apart > 1.7 and close < apart - 0.4


def test_clutter_comes_and_goes_and_scores_lower_than_people():
    gt = walkers(400, 1)
    e = CrowdErrors(clutter_rate=2.0, part_chance=0.0)
    det = CrowdDetector(gt, SIZE, 10.0, errors=e, seed=6)
    counts = [len(det.detect(frame(f))) - 1 for f in range(1, 401)]
    assert 0.5 < np.mean(counts) < 20
    assert len(set(counts)) > 3  # sites are born and die


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 500), st.floats(0, 300), st.floats(1, 200), st.floats(1, 200)),
                min_size=0, max_size=8))
def test_occlusion_is_a_share_and_the_nearest_box_is_never_covered(boxes):
    xywh = np.array(boxes, float).reshape(-1, 4)
    c = occlusion(xywh)
    assert c.shape == (len(xywh),) and np.all((c >= 0) & (c <= 1))
    if len(xywh):
        bottom = xywh[:, 1] + xywh[:, 3]
        assert c[int(np.argmax(bottom))] == 0.0


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(DetectorError, match="fps"):
        CrowdDetector(walkers(2, 1), SIZE, 0.0)
    with pytest.raises(DetectorError, match="rows"):
        CrowdDetector(np.zeros((3, 4)), SIZE, 10.0)
    bad = tmp_path / "gt.txt"
    bad.write_text("not,a,gt\n")
    with pytest.raises(DetectorError, match="not a readable"):
        CrowdDetector.from_mot(bad, SIZE, 10.0)
    with pytest.raises(ValueError, match="base_find"):
        CrowdErrors(base_find=1.5).validate()


def test_mot17_rows_carry_their_visibility(shared_data):
    det = CrowdDetector.from_mot(shared_data / "mot/MOT17/MOT17-09-FRCNN/gt/gt.txt", (1920, 1080), 30.0)
    n = sum(len(det.detect(Frame(np.ones((2, 2, 3), np.uint8), None, 0, f, (1920, 1080)))) for f in range(1, 51))
    assert n > 50 * 5  # a few people a frame are found

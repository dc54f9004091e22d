"""bench.tracking's slower-detector view (`--every K`): frames 1, 1+K, ... renumbered, the rate divided."""

from __future__ import annotations

import numpy as np

from bench.lib.sequences import every


def test_every_second_frame_is_the_sequence_a_detector_half_as_fast_sees():
    dets = [np.full((1, 5), float(f)) for f in range(1, 8)]  # frame f's detection holds f
    gt = np.array([[f, 1, f, 0, 10, 20] for f in range(1, 8)], float)
    d, g, fps = every(dets, gt, 14.0, 2)
    assert [int(x[0, 0]) for x in d] == [1, 3, 5, 7] and fps == 7.0
    assert g[:, 0].tolist() == [1, 2, 3, 4] and g[:, 2].tolist() == [1, 3, 5, 7]  # gt of frames 1, 3, 5, 7


def test_the_score_breaks_errors_down_by_kind():
    from bench.lib.motscore import score

    gt = np.array([[f, 1, 0, 0, 10, 20] for f in range(1, 7)], float)  # one person, frames 1..6
    # Tracked as id 5 on 1-2, missed on 3, id 6 on 4-6, and a false box on frames 3 and 6. (A frame with no
    # tracker box at all does not break a gt track's run in the scorer: the false box on 3 makes it count.)
    res = [(f, 5 if f < 3 else 6, 0, 0, 10, 20) for f in (1, 2, 4, 5, 6)] + [(f, 7, 100, 100, 10, 20) for f in (3, 6)]
    s = score(res, gt)
    assert (s["FN"], s["FP"], s["IDSW"], s["Frag"], s["ids"]) == (1, 2, 1, 1, 3)
    assert 0 < s["AssA"] < 1 and 0 < s["DetA"] < 1


def test_the_leave_one_out_bench_names_an_unknown_sequence_in_one_line(capsys):
    from bench import tracking_loso

    assert tracking_loso.main(["--only", "PETS09-S2L1,nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no sequence nope" in err[0] and "PETS09-S2L1" in err[0]


def test_the_leave_one_out_grid_tries_the_low_score_pass_at_bytetracks_least_iou():
    """The low-score pass's least IoU at 0.1 (Roboflow's ByteTrack, both passes) is in the left-out grid, in
    place of the IMM, which no fold chose: the grid stays at 12 settings, the defaults first."""
    from bench import tracking_loso
    from firmware.config.sensing import TrackerConfig

    g = tracking_loso.grid()
    assert len(g) == 12 and g[0] == TrackerConfig() and len(set(g)) == 12
    low = [c for c in g if c.low_match_iou == 0.1]
    assert len(low) == 4 and TrackerConfig(low_match_iou=0.1) in low  # alone, and with each other axis
    assert all(c.imm_switch_hz == 0 for c in g)

"""`umbra track`: MOTChallenge detections in, MOTChallenge results out; bad files named with the line."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.cli.main import main
from firmware.sensing.mot import read_detections, read_seqinfo


def test_track_writes_motchallenge_results_a_scorer_accepts(shared_data, tmp_path, capsys):
    from bench.lib.motscore import load_gt, score

    seq = shared_data / "mot/MOT15/TUD-Campus"
    out = tmp_path / "TUD-Campus.txt"
    assert main(["track", "--det", str(seq / "det/det.txt"), "--seqinfo", str(seq / "seqinfo.ini"),
                 "--out", str(out)]) == 0
    rows = np.loadtxt(out, delimiter=",", ndmin=2)
    assert rows.shape[1] == 10 and len(rows) > 50
    assert rows[:, 0].min() >= 1 and rows[:, 0].max() <= 71
    s = score(rows[:, :6], load_gt(seq / "gt/gt.txt"))
    assert s["MOTA"] > 0.35 and s["IDF1"] > 0.5  # bench.tracking: 0.382 / 0.542


def test_a_bad_detection_line_is_named(tmp_path, capsys, shared_data):
    det = tmp_path / "det.txt"
    det.write_text("1,-1,10,10,20,40,0.9\n2,-1,10,10,-5,40,0.9\n")
    code = main(["track", "--det", str(det), "--seqinfo",
                 str(shared_data / "mot/MOT15/TUD-Campus/seqinfo.ini"), "--out", str(tmp_path / "r.txt")])
    assert code == 2
    assert "det.txt:2" in capsys.readouterr().err
    assert not (tmp_path / "r.txt").exists()


def test_unbounded_scores_become_ranks_unless_raw(tmp_path):
    det = tmp_path / "det.txt"
    det.write_text("1,-1,0,0,10,10,50\n1,-1,0,0,10,10,-3\n1,-1,0,0,10,10,120\n")
    assert read_detections(det)[:, 5].tolist() == [0.5, 0.0, 1.0]
    assert read_detections(det, raw_scores=True)[:, 5].tolist() == [50, -3, 120]
    with pytest.raises(Exception, match="cannot read"):
        read_detections(tmp_path / "missing.txt")


def test_seqinfo_gives_the_frame_size_when_it_has_one(tmp_path, shared_data):
    assert read_seqinfo(shared_data / "mot/MOT15/KITTI-13/seqinfo.ini") == (10.0, 340, (1242, 375))
    bare = tmp_path / "seqinfo.ini"
    bare.write_text("[Sequence]\nframeRate=25\nseqLength=71\n")
    assert read_seqinfo(bare) == (25.0, 71, None)  # the tracker then reports coasting tracks wherever they go

"""`umbra audit-counts`: on a PETS09 run (scripted detector replaying the gt through the real tracker and
quantizer) the report against the ground truth has the same per-line figures, net and gross, and the same
total absolute error as the bench run's own counting (the device's line counts, bench.run.device_counts), and
its recount from records the same as the bench's (bench.counting); the records' own crossings (umbra.track/2)
equal the device's line counts bucket by bucket; hand counts as crossings or tallies."""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.lib.crossings import compare, count_crossings, count_records, paths_from_gt, per_bucket
from firmware import config as cfgmod
from firmware.cli.assemble import JsonlSink, build_loop
from firmware.cli.main import main
from firmware.errors import InstallerError
from firmware.installer.countaudit import LineCountSink, read_hand_counts, read_line_counts, tally
from firmware.sensing.geometry import Crossing
from firmware.sensing.loop import RunEnd, TickResult, end_run
from hal.clock import FakeClock
from hal.scripted import ScriptedDetector
from hal.synthetic import SyntheticCamera

ROOT = Path(__file__).resolve().parents[3]
START = 1_700_000_000.0


@pytest.fixture(scope="module")
def run(shared_data: Path, tmp_path_factory):
    gt = shared_data / "mot/MOT15/PETS09-S2L1/gt/gt.txt"
    cfg = cfgmod.load(ROOT / "bench/configs/pets09.toml")
    cfg = replace(cfg, detector=replace(cfg.detector, kind="scripted", ground_truth=str(gt)))
    out, counts = io.StringIO(), io.StringIO()
    clock = FakeClock(start_wall=START)
    loop = build_loop(cfg, ROOT / "bench/configs", clock, camera=SyntheticCamera(
        clock, source_size=(768, 576), frames=795, main_size=None), detector=ScriptedDetector.from_mot(
        gt, (768, 576), seed=3), sinks=[JsonlSink(out), LineCountSink(counts, cfg.quantize.time_bucket_s)])
    counted: list = []
    loop.sinks.append(lambda r: counted.extend(r.crossings))
    loop.run()
    folder = tmp_path_factory.mktemp("audit")
    path = folder / "tracks.jsonl"
    path.write_text(out.getvalue())
    (folder / "crossings.jsonl").write_text(counts.getvalue())
    assert len(read_line_counts(folder / "crossings.jsonl")) == len(counted) > 20  # every crossing the loop counted
    return cfg, gt, path


def test_the_device_counts_give_the_bench_runs_own_counting_figures(run, capsys) -> None:
    """Issue 18, point 4: the same net and gross per line, and the same total error, as the bench run prints
    for its counting, both read from the device's own line counts."""
    from bench.run import device_counts

    cfg, gt, records = run
    crossings = records.parent / "crossings.jsonl"
    assert main(["audit-counts", "--config", str(ROOT / "bench/configs/pets09.toml"), "--crossings",
                 str(crossings), "--gt", str(gt)]) == 0
    out = capsys.readouterr().out
    assert "the device's own line counts" in out and "recount" not in out
    lines = cfg.geometry.lines
    found, truth = device_counts(crossings), count_crossings(paths_from_gt(gt), lines)
    table, _ = compare(found, truth, lines)
    bench_total = re.search(r"total absolute error (\d+) of (\d+)", table)
    ours = re.search(r"total absolute error (\d+) of (\d+)", out)
    assert bench_total and ours and bench_total.groups() == ours.groups()
    for ln in lines:
        tp, tm = truth.get((ln.name, "+"), 0), truth.get((ln.name, "-"), 0)
        fp, fm = found.get((ln.name, "+"), 0), found.get((ln.name, "-"), 0)
        row = re.search(rf"^{re.escape(ln.name)}\s+([+-]\d+)\s+([+-]\d+)\s+(\d+)\s+(\d+)$", out, re.M)
        assert row is not None, out
        assert [int(g) for g in row.groups()] == [tp - tm, fp - fm, tp + tm, fp + fm]


def test_a_recount_from_records_is_the_devices_own_counts_bucket_by_bucket(run) -> None:
    """Issue 17: each track record carries the crossings the loop's line counter confirmed for its pseudonym in
    its bucket, so the cloud's recount (`record_crossings`, `count_records`) is the device's crossings file,
    per bucket, line and way, on a whole PETS09 run."""
    from firmware.installer.countaudit import record_crossings

    cfg, gt, records = run
    recs = [json.loads(x) for x in records.read_text().splitlines()]
    assert recs and all(r["schema"] == "umbra.track/2" for r in recs)
    bucket = cfg.quantize.time_bucket_s
    device = per_bucket(((c.t, c.line, c.direction) for c in read_line_counts(records.parent / "crossings.jsonl")),
                        bucket)
    recount = per_bucket(((c.t, c.line, c.direction) for c in record_crossings(recs, cfg.geometry.lines)), bucket)
    assert sum(device.values()) > 20 and recount == device
    lines = cfg.geometry.lines
    assert count_records(recs, lines) == tally(read_line_counts(records.parent / "crossings.jsonl"))
    v1 = [{**{k: v for k, v in r.items() if k != "crossings"}, "schema": "umbra.track/1"} for r in recs]
    assert count_records(v1, lines) != count_records(recs, lines)  # the old recount from cells is not it


def test_line_counts_leave_per_ended_bucket_sorted_and_at_stop() -> None:
    out = io.StringIO()
    sink = LineCountSink(out, 5)
    nobody: Any = None  # the sink reads no ground

    def tick(wall: float, *cs: tuple[str, str]) -> None:
        sink(TickResult(wall, [], [Crossing(7, ln, d) for ln, d in cs], nobody))

    tick(START + 1, ("b", "+"), ("a", "-"))
    tick(START + 4.5, ("a", "-"))
    assert out.getvalue() == ""  # the bucket has not ended
    tick(START + 5.0)
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert rows == [{"t": START, "bucket_s": 5, "line": "a", "direction": "-", "count": 2},
                    {"t": START, "bucket_s": 5, "line": "b", "direction": "+", "count": 1}]
    tick(START + 7, ("a", "+"))
    end_run(sink, RunEnd(START + 8, []))  # the loop stopping
    assert json.loads(out.getvalue().splitlines()[-1]) == {"t": START + 5, "bucket_s": 5, "line": "a",
                                                           "direction": "+", "count": 1}
    assert sink.count == 4


def test_against_the_gt_it_prints_the_bench_countings_figures(run, capsys) -> None:
    cfg, gt, records = run
    assert main(["audit-counts", "--config", str(ROOT / "bench/configs/pets09.toml"), "--records", str(records),
                 "--gt", str(gt)]) == 0
    out = capsys.readouterr().out
    recs = [json.loads(x) for x in records.read_text().splitlines()]
    lines = cfg.geometry.lines
    found, truth = count_records(recs, lines), count_crossings(paths_from_gt(gt), lines)
    table, _ = compare(found, truth, lines)
    bench_total = re.search(r"total absolute error (\d+) of (\d+)", table)
    ours = re.search(r"total absolute error (\d+) of (\d+)", out)
    assert bench_total and ours and bench_total.groups() == ours.groups()
    assert int(bench_total.group(2)) > 20  # PETS09 has crossings to count
    for ln in lines:
        tp, tm = truth.get((ln.name, "+"), 0), truth.get((ln.name, "-"), 0)
        fp, fm = found.get((ln.name, "+"), 0), found.get((ln.name, "-"), 0)
        row = re.search(rf"^{re.escape(ln.name)}\s+([+-]\d+)\s+([+-]\d+)\s+(\d+)\s+(\d+)$", out, re.M)
        assert row is not None, out
        assert [int(g) for g in row.groups()] == [tp - tm, fp - fm, tp + tm, fp + fm]
        for d, t, f in (("+", tp, fp), ("-", tm, fm)):
            assert re.search(rf"^{re.escape(ln.name)}\s+\{d}\s+{t}\s+{f}\s", out, re.M), out


def test_hand_counted_crossings_and_tallies(run, tmp_path, capsys) -> None:
    cfg, gt, records = run
    hand = tmp_path / "hand.csv"
    hand.write_text("time,line,direction\n" + f"{START + 3},north-south,in\n" * 3 + f"{START + 100},east-west,-\n"
                    + "2023-11-14T22:15:00Z,east-west,out\n")
    assert main(["audit-counts", "--config", str(ROOT / "bench/configs/pets09.toml"), "--records", str(records),
                 "--hand", str(hand)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^north-south\s+\+\s+3\s", out, re.M) and re.search(r"^east-west\s+-\s+2\s", out, re.M)
    assert "in/out balance" in out and "3 in, 2 out (+1)" in out
    tallies = tmp_path / "tallies.csv"
    tallies.write_text(f"start,end,line,direction,count\n{START},{START + 60},north-south,+,4\n"
                       f"{START + 60},{START + 120},north-south,+,2\n")
    counts = read_hand_counts(tallies, cfg.geometry.lines)
    assert counts.counts == {("north-south", "+"): 6} and len(counts.periods) == 2


@pytest.mark.parametrize("text, message", [
    ("when,line\n1,a\n", "first row must be"),
    ("time,line,direction\n1,nowhere,+\n", "no count line 'nowhere'"),
    ("time,line,direction\n1,north-south,up\n", "direction 'up'"),
    ("time,line,direction\n2023-11-14T22:15:00,north-south,+\n", "no time zone"),
    ("start,end,line,direction,count\n5,1,north-south,+,3\n", "end is not after start"),
])
def test_bad_hand_counts_say_what_is_wrong(run, tmp_path, text: str, message: str) -> None:
    cfg, _, _ = run
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(InstallerError, match=message):
        read_hand_counts(p, cfg.geometry.lines)

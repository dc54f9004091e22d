"""`umbra run` says what it did at stop: crossings per line and direction, people per zone, records by kind,
dropped frames in plain words; with [installer] enabled the view's server starts and stops with the run."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

from firmware.cli.main import main
from firmware.config import load, to_toml
from firmware.installer.countaudit import read_line_counts, tally

ROOT = Path(__file__).resolve().parents[3]


def test_the_stop_summary_names_counts_zones_records_and_dropped_frames(tmp_path, shared_data, capsys) -> None:
    base = load(ROOT / "bench/configs/pets09.toml")
    table = {
        "device": {"id": "run-1", "state_dir": str(tmp_path / "state")},
        "camera": {"kind": "video", "source": str(shared_data / "video/vtest.avi"), "fps": 7.0},
        "detector": {"kind": "scripted", "ground_truth": str(shared_data / "mot/MOT15/PETS09-S2L1/gt/gt.txt")},
        "loop": {"detect_hz": 7.0},
        "geometry": asdict(base.geometry),
        "output": {"tracks_file": str(tmp_path / "tracks.jsonl"), "aggregates_file": str(tmp_path / "agg.jsonl"),
                   "crossings_file": str(tmp_path / "crossings.jsonl")},
        "privacy": {"budget_file": str(tmp_path / "budget.sqlite"), "audit_file": str(tmp_path / "audit.jsonl"),
                    "profile": "tracks"},
        "samples": {"enabled": False},
        "installer": {"enabled": True, "port": 0},
    }
    cfg = tmp_path / "sensor.toml"
    cfg.write_text(to_toml(table))
    assert main(["run", "--config", str(cfg), "--max-frames", "30"]) == 0
    out = capsys.readouterr().out
    assert "umbra stopped after 30 ticks (30 frames)" in out
    said = re.search(r"north-south \+(\d+) -(\d+); east-west \+(\d+) -(\d+)", out)
    assert said
    counted = tally(read_line_counts(tmp_path / "crossings.jsonl"))  # [output] crossings_file: the same counts
    assert [counted.get(k, 0) for k in (("north-south", "+"), ("north-south", "-"), ("east-west", "+"),
                                        ("east-west", "-"))] == [int(g) for g in said.groups()]
    assert re.search(r"west \d+ at stop, at most \d+", out) and "east " in out
    made = sum(1 for _ in (tmp_path / "tracks.jsonl").open())
    assert f"records: {made} quantized track records released" in out and made > 0
    assert "frames dropped because a tick ran late:" in out and "never queues them" in out
    events = [json.loads(x)["event"] for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert "installer_mode_started" in events

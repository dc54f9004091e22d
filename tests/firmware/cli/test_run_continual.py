"""`umbra run` with `[privacy] tree_enabled`: the running totals come out beside the aggregates, valid against
the schema, paid from the same budget store, their state under the configured state file."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from pathlib import Path

from firmware.cli.main import main
from firmware.config import load, to_toml
from firmware.schemas import validate

ROOT = Path(__file__).resolve().parents[3]


def test_run_releases_running_totals_from_the_same_budget(tmp_path, shared_data) -> None:
    base = load(ROOT / "bench/configs/pets09.toml")
    table = {
        "device": {"id": "run-tree", "state_dir": str(tmp_path / "state")},
        "camera": {"kind": "video", "source": str(shared_data / "video/vtest.avi"), "fps": 7.0},
        "detector": {"kind": "scripted", "ground_truth": str(shared_data / "mot/MOT15/PETS09-S2L1/gt/gt.txt")},
        "loop": {"detect_hz": 7.0},
        "geometry": asdict(base.geometry),
        "output": {"aggregates_file": str(tmp_path / "agg.jsonl")},
        "privacy": {"budget_file": str(tmp_path / "budget.sqlite"), "audit_file": str(tmp_path / "audit.jsonl"),
                    "tree_enabled": True, "tree_step_s": 10, "tree_state_file": str(tmp_path / "tree.json")},
        "samples": {"enabled": False},
    }
    cfg = tmp_path / "sensor.toml"
    cfg.write_text(to_toml(table))
    assert main(["run", "--config", str(cfg), "--max-frames", "40"]) == 0
    records = [json.loads(x) for x in (tmp_path / "agg.jsonl").read_text().splitlines()]
    totals = [r for r in records if r["metric"] in ("flow_total", "visitors_total")]
    assert totals and all(r["mechanism"] == "binary_tree" for r in totals)
    for r in totals:
        validate(r)
    steps = {r["window_start"] for r in totals}
    with sqlite3.connect(tmp_path / "budget.sqlite") as db:
        spent = dict(db.execute("SELECT stream, releases FROM spent").fetchall())
    assert spent["flow_total"] == spent["visitors_total"] == len(steps)  # one charge per released step
    assert json.loads((tmp_path / "tree.json").read_text())["last_step"] * 10 == max(steps)
    events = [json.loads(x)["event"] for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert events.count("epsilon_spent") >= 2 * len(steps)

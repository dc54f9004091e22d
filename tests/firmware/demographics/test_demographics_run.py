"""[demographics] in `umbra run` and in the DPIA: off by default (no model loaded, nothing estimated), on it
estimates in the loop, spends from the shared budget file on its own stream, audits what it released, and the
DPIA states the stream with its epsilon; mood is said to have no model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from firmware.config import load, to_toml
from firmware.config.demographics import DemographicsConfig
from firmware.privacy.accountant import Accountant
from firmware.privacy.dpia import generate_dpia

ROOT = Path(__file__).resolve().parents[3]


def table(shared_data: Path, tmp_path: Path) -> dict:
    cfg = load(ROOT / "bench/configs/pets09.toml")
    return {"camera": {"kind": "video", "source": str(shared_data / "video/vtest.avi"), "fps": 7.0,
                       "main_size": [640, 480]},
            "detector": {"kind": "scripted", "ground_truth": str(shared_data / "mot/MOT15/PETS09-S2L1/gt/gt.txt")},
            "loop": {"detect_hz": 50.0, "emit_hz": 2.0},
            "geometry": {"homography": [list(r) for r in cfg.geometry.homography],
                         "zones": [{"name": z.name, "polygon": [list(p) for p in z.polygon]}
                                   for z in cfg.geometry.zones]},
            "output": {"aggregates_file": str(tmp_path / "agg.jsonl")},
            "privacy": {"profile": "aggregates", "window_s": 60, "budget_file": str(tmp_path / "b.sqlite"),
                        "audit_file": str(tmp_path / "audit.jsonl")},
            "samples": {"enabled": False}}


def test_off_by_default_no_model_and_on_it_runs_spends_and_audits(tmp_path, shared_data, monkeypatch):
    from firmware.cli.main import main
    from hal import agegender

    monkeypatch.setenv("UMBRA_DATA_DIR", str(shared_data))
    built: list = []
    real_init = agegender.OnnxAgeGender.__init__

    def counting_init(self, *a, **k):
        built.append(self)
        real_init(self, *a, **k)

    monkeypatch.setattr(agegender.OnnxAgeGender, "__init__", counting_init)
    t = table(shared_data, tmp_path)
    (tmp_path / "off.toml").write_text(to_toml(t))
    assert main(["run", "--config", str(tmp_path / "off.toml"), "--max-frames", "10"]) == 0
    assert built == []  # off: the models are not even loaded
    t["demographics"] = {"enabled": True, "window_s": 10, "max_estimates_per_tick": 2, "tick_share": 1.0}
    (tmp_path / "on.toml").write_text(to_toml(t))
    assert main(["run", "--config", str(tmp_path / "on.toml"), "--max-frames", "30"]) == 0
    assert len(built) == 1
    entries = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    spent = [e["fields"] for e in entries if e["event"] == "budget_spent" and e["fields"]["stream"] == "demographics"]
    released = [e["fields"] for e in entries if e["event"] == "demographics_released"]
    assert spent and len(released) == len(spent)
    assert all(set(f) == {"window_start", "window_s", "records", "zones", "estimates", "deferred_ticks", "k"}
               for f in released)
    acc = Accountant(tmp_path / "b.sqlite", DemographicsConfig(window_s=10).budgets())
    try:
        assert acc.spent("demographics", float(released[0]["window_start"])) == len(spent)  # the shared file
    finally:
        acc.close()
    lines = (tmp_path / "agg.jsonl").read_text().splitlines() if (tmp_path / "agg.jsonl").exists() else []
    demo = [json.loads(x) for x in lines if '"umbra.demographics/1"' in x]
    assert len(demo) == sum(f["records"] for f in released)


def test_the_dpia_states_the_stream_only_when_on():
    cfg = load(ROOT / "bench/configs/pets09.toml")
    assert "demographics" not in generate_dpia(cfg, now=0.0)
    on = replace(cfg, demographics=DemographicsConfig(enabled=True, epsilon=0.5, window_s=900, k=7))
    md = generate_dpia(on, now=0.0)
    assert "estimated age band (0-17, 18-27, 28-37, 38-47, 48-57, 58+)" in md
    assert "epsilon = 0.5 per window" in md and "48 (epsilon times the 96 windows) per day" in md
    assert "k = 7" in md and "no estimate leaves alone" in md and "no mood" in md
    assert "demographic estimates" in md  # what stays in memory, and for how long
    # the bound per person as far as the device knows, and what it does not cover
    assert "a track lost and born again within 2 s near where it ended" in md and "counts again" in md

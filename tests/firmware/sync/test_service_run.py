"""`umbra run` with sync on: the sensor loop on the shared footage, the outbox and the uploader thread, a real
reference cloud over mutual TLS on 127.0.0.1; the cloud ends up with exactly the records the device released."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from cloud.app import DEV_DEVICE
from cloud.harness import CloudThread, device_setup
from firmware.cli.main import main
from firmware.config import load, to_toml
from firmware.sync.service import zone_plan
from hal.clock import SystemClock

ROOT = Path(__file__).resolve().parents[3]


def test_umbra_run_syncs_what_it_releases_to_the_cloud(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("UMBRA_DATA_DIR", str(shared_data))
    cloud = CloudThread(tmp_path / "cloud", SystemClock())
    try:
        dev = device_setup(cloud.cloud, tmp_path / "device", cloud.port)
        base = load(ROOT / "bench/configs/pets09.toml")
        table = {
            "device": {"id": DEV_DEVICE},
            "camera": {"kind": "video", "source": str(shared_data / "video/vtest.avi"), "fps": 7.0},
            "detector": {"kind": "scripted", "ground_truth": str(shared_data / "mot/MOT15/PETS09-S2L1/gt/gt.txt")},
            "loop": {"detect_hz": 25.0, "emit_hz": 2.0},
            "geometry": asdict(base.geometry),
            "output": {"tracks_file": str(tmp_path / "released.jsonl")},
            "samples": {"enabled": False},  # sampled at a random instant of the hour: tests/test_samples_in_loop.py
            "privacy": {"profile": "tracks", "window_s": 60, "budget_file": str(tmp_path / "budget.sqlite"),
                        "audit_file": str(tmp_path / "audit.jsonl")},
            "sync": dev.sync_table(),
        }
        cfg_path = tmp_path / "sensor.toml"
        cfg_path.write_text(to_toml(table))
        assert main(["run", "--config", str(cfg_path), "--max-frames", "60"]) == 0
        released = [json.loads(x) for x in (tmp_path / "released.jsonl").read_text().splitlines()]
        held = [json.loads(b) for b in cloud.cloud.store.bodies(DEV_DEVICE)]
    finally:
        cloud.close()
    # one record per pseudonym per 5 s bucket (2.4 s of video: one bucket), one for each of the walkers tracked
    assert len({(r["pseudonym"], r["t"]) for r in released}) == len(released) >= 5
    status = [r for r in held if r["schema"] == "umbra.status/1"]
    assert len(status) == 1 and status[0]["detector"] == "scripted"  # the first tick reports health
    assert status[0]["zone_plan"] == zone_plan(base.geometry)  # the first status after starting carries the plan
    assert [z["name"] for z in status[0]["zone_plan"]["zones"]] == [z.name for z in base.geometry.zones]
    assert [r for r in held if r["schema"] == "umbra.track/2"] == released
    # the partial window's aggregates were paid for at shutdown (whatever k let through)
    from firmware.privacy.accountant import Accountant

    budget = Accountant(tmp_path / "budget.sqlite", {"occupancy": 1})
    assert budget.spent("occupancy", released[-1]["t"]) in (1, 2)  # 1 window, or 2 if a minute began mid-run
    for r in held:
        if r["schema"] == "umbra.aggregate/1":
            assert r["window_s"] == 60 and r["epsilon"] == 1.0
    # the privacy audit log: a valid chain with the frames the loop took and destroyed, the budget spent and
    # what was released
    from firmware.privacy.audit import verify

    assert verify(tmp_path / "audit.jsonl").ok
    entries = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    frames = [e["fields"] for e in entries if e["event"] == "frames"]
    assert sum(f["processed"] for f in frames) == sum(f["destroyed"] for f in frames) == 60
    tracks = sum(e["fields"]["count"] for e in entries
                 if e["event"] == "records_released" and e["fields"]["kind"] == "track")
    assert tracks == len(released)
    spent = {e["fields"]["stream"] for e in entries if e["event"] == "budget_spent"}
    assert spent == {"occupancy", "flow", "dwell", "heatmap"}

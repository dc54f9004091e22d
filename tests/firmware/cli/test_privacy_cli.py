"""`umbra privacy`: the DPIA of a config, and data-subject requests answered from the device's real outbox
(access reports what it holds in the range, erasure deletes it), each audited in the config's audit log."""

from __future__ import annotations

import json
from pathlib import Path

from firmware.cli.main import main
from firmware.config import to_toml
from firmware.config.sync import OutboxConfig
from firmware.privacy.audit import verify
from firmware.samples.taking import sample_record
from firmware.sensing.records import QuantizedTrack
from firmware.sync.outbox import Outbox

T0 = 1_700_000_000


def config(tmp_path: Path) -> Path:
    path = tmp_path / "sensor.toml"
    path.write_text(to_toml({
        "device": {"id": "dev-1"},
        "privacy": {"budget_file": str(tmp_path / "budget.sqlite"), "audit_file": str(tmp_path / "audit.jsonl")},
        "sync": {"outbox": {"path": str(tmp_path / "outbox.sqlite")}},
    }))
    return path


def aggregate(t: int, zone: str) -> dict:
    return {"schema": "umbra.aggregate/1", "window_start": t, "window_s": 900, "metric": "occupancy", "zone": zone,
            "values": [7, 2.5, 4], "k": 5, "epsilon": 1.0, "sensitivity": [1, 0.5, 1],
            "mechanism": "discrete_laplace"}


def test_access_then_erasure_from_the_outbox(tmp_path, capsys):
    cfg = config(tmp_path)
    with Outbox(OutboxConfig(path=str(tmp_path / "outbox.sqlite"))) as ob:
        ob.enqueue([QuantizedTrack("ab" * 8, 0, T0 + 10, (1, 2), 0.5, "M", 0, "door", "person").to_json(),
                    QuantizedTrack("cd" * 8, 0, T0 + 20, (3, 4), 0.5, "S", 1, "till", "person").to_json(),
                    aggregate(T0, "door"), sample_record(b"\xff\xd8\xff\xe0x", T0 + 30),
                    QuantizedTrack("ef" * 8, 0, T0 + 5000, (1, 2), 0.5, "M", 0, "door", "person").to_json()])
    assert main(["privacy", "access", "--config", str(cfg), "--id", "r1", "--start", str(T0),
                 "--end", str(T0 + 3600), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["held"] == {"sample": 1, "track": 2, "aggregate": 1, "flowgroups": 0, "demographics": 0}
    assert answer["by_zone"] == {"door": 2, "till": 1, "-": 1}
    assert answer["sample_times"] == [T0 + 30]
    assert main(["privacy", "access", "--config", str(cfg), "--id", "r2", "--start", str(T0),
                 "--end", str(T0 + 3600), "--zone", "till", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["held"]["track"] == 1
    assert main(["privacy", "erasure", "--config", str(cfg), "--id", "r3", "--start", str(T0),
                 "--end", str(T0 + 3600)]) == 0
    assert "records erased" in capsys.readouterr().out
    with Outbox(OutboxConfig(path=str(tmp_path / "outbox.sqlite"))) as ob:
        left = [json.loads(b) for b in ob.take_batch().bodies]
    assert [r["t"] for r in left] == [T0 + 5000]  # only what lies outside the range
    events = [json.loads(x)["event"] for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert events == ["dsr_access", "dsr_access", "dsr_erasure"]
    assert verify(tmp_path / "audit.jsonl").ok


def test_a_bad_range_is_refused_and_the_dpia_describes_the_config(tmp_path, capsys):
    cfg = config(tmp_path)
    assert main(["privacy", "access", "--config", str(cfg), "--id", "r1", "--start", "10", "--end", "5"]) == 2
    assert "range" in capsys.readouterr().err
    assert main(["privacy", "dpia", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "Umbra sensor dev-1" in out and "k = 5" in out

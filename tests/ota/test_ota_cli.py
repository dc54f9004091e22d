"""`umbra ota`: init, build, publish, stage, status (halting), rotate keys; clear errors."""

from __future__ import annotations

import json

from firmware.cli.main import main
from ota.repo import Repository
from ota.rollout import position


def test_the_ops_flow_from_init_to_a_halted_rollout(tmp_path, capsys):
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    (tree / "umbra").mkdir(parents=True)
    (tree / "umbra" / "main.py").write_text("print(1)\n")
    assert main(["ota", "init", "--repo", str(repo)]) == 0
    assert main(["ota", "build", "--src", str(tree), "--version", "1.1.0", "--hardware", "umbra-pi4",
                 "--min-from", "1.0.0", "--out", str(tmp_path / "b.tar")]) == 0
    assert main(["ota", "publish", "--repo", str(repo), "--bundle", str(tmp_path / "b.tar")]) == 0
    assert main(["ota", "stage", "--repo", str(repo), "--release", "1.1.0", "--percents", "10", "100",
                 "--every-hours", "24", "--budget", "0.05"]) == 0
    fleet = [f"d{i}" for i in range(400)]
    (tmp_path / "fleet.txt").write_text("\n".join(fleet))
    first = [d for d in fleet if position(d, "1.1.0") < 0.10]
    (tmp_path / "reports.jsonl").write_text("\n".join(json.dumps({"device": d, "result": "rolled_back"})
                                                      for d in first[:5]))
    capsys.readouterr()
    assert main(["ota", "status", "--repo", str(repo), "--fleet", str(tmp_path / "fleet.txt"),
                 "--reports", str(tmp_path / "reports.jsonl"), "--apply"]) == 0
    out = capsys.readouterr().out
    assert "HALT" in out and "halt published" in out
    assert Repository(repo).rollout()["state"] == "halted"
    assert main(["ota", "stage", "--repo", str(repo), "--resume"]) == 0
    assert Repository(repo).rollout()["state"] == "running"
    root_v = json.loads((repo / "public/metadata/root.json").read_text())["signed"]["version"]
    assert main(["ota", "rotate-keys", "--repo", str(repo), "--role", "timestamp"]) == 0
    assert json.loads((repo / "public/metadata/root.json").read_text())["signed"]["version"] == root_v + 1
    ts_v = json.loads((repo / "public/metadata/timestamp.json").read_text())["signed"]["version"]
    assert main(["ota", "timestamp", "--repo", str(repo)]) == 0  # the daily re-signing
    assert json.loads((repo / "public/metadata/timestamp.json").read_text())["signed"]["version"] > ts_v
    assert main(["ota", "init", "--repo", str(repo)]) == 2  # never over an existing repository
    assert "already holds" in capsys.readouterr().err

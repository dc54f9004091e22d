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
                 "--reports", str(tmp_path / "reports.jsonl"), "--apply"]) == 3  # cron sees the halt
    out = capsys.readouterr().out
    assert "HALT" in out and "halt published" in out and "FAILED (over budget)" in out
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


def _staged(tmp_path, capsys, release="1.1.0"):
    repo = tmp_path / "repo"
    Repository(repo).init()
    assert main(["ota", "stage", "--repo", str(repo), "--release", release, "--percents", "10", "100",
                 "--every-hours", "24", "--budget", "0.05"]) == 0
    fleet = [f"d{i}" for i in range(200)]
    (tmp_path / "fleet.txt").write_text("\n".join(fleet))
    capsys.readouterr()
    return repo, [d for d in fleet if position(d, release) < 0.10]


def _status(tmp_path, repo, lines, *extra):
    (tmp_path / "reports.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    return main(["ota", "status", "--repo", str(repo), "--fleet", str(tmp_path / "fleet.txt"),
                 "--reports", str(tmp_path / "reports.jsonl"), *extra])


def test_status_lists_each_stage_s_devices_and_exits_0_while_healthy(tmp_path, capsys):
    repo, first = _staged(tmp_path, capsys)
    lines = [{"device": first[0], "result": "committed"}, {"device": first[1], "result": "installed"}]
    assert _status(tmp_path, repo, lines, "--devices") == 0
    out = capsys.readouterr().out
    assert f"stage 1 (10%): {len(first)} devices, 1 healthy, 1 installed, 0 failed, {len(first) - 2} pending" in out
    assert f"healthy   {first[0]}" in out and f"installed {first[1]}" in out
    assert "stage 2 (100%, not started): 200 devices" in out


def test_unknown_install_results_are_refused(tmp_path, capsys):
    repo, first = _staged(tmp_path, capsys)
    assert _status(tmp_path, repo, [{"device": first[0], "result": "mostly_fine"}]) == 2
    assert "unknown install result 'mostly_fine'" in capsys.readouterr().err
    (tmp_path / "reports.jsonl").write_text("not json\n")
    assert main(["ota", "status", "--repo", str(repo), "--fleet", str(tmp_path / "fleet.txt"),
                 "--reports", str(tmp_path / "reports.jsonl")]) == 2
    assert "reports.jsonl:1: not a JSON object" in capsys.readouterr().err


def test_an_abort_is_final_and_a_new_release_restarts(tmp_path, capsys):
    repo, _ = _staged(tmp_path, capsys)
    assert main(["ota", "stage", "--repo", str(repo), "--abort"]) == 0
    assert main(["ota", "stage", "--repo", str(repo), "--resume"]) == 2
    assert "abort is final" in capsys.readouterr().err
    assert main(["ota", "stage", "--repo", str(repo), "--release", "1.1.0"]) == 2  # not by staging it again
    assert Repository(repo).rollout()["state"] == "aborted"
    assert _status(tmp_path, repo, []) == 3
    assert main(["ota", "stage", "--repo", str(repo), "--release", "1.1.1"]) == 0
    assert Repository(repo).rollout()["state"] == "running"
    assert Repository(repo).rollout("1.1.0")["state"] == "aborted"

"""No audit log, no differentially private release (third attacker sweep, issue 15). Only the hash-chained
audit log vouches for what was released and spent: with `[privacy] audit_file = ""`, deleting the budget store
(and the continual-observation state with it) could not be told from a new device, and the day's budget was
spent again. The product always has a log (it defaults under the state dir), so a config without one is
refused as a config error naming the key, before anything runs. On the old code every such config ran, and
the rewound budget released the same day's windows and running totals a second time."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.cli.main import main
from firmware.config import to_toml
from firmware.config.privacy import PrivacyConfig


@given(blank=st.text(alphabet=" \t\n\r\x0b\x0c", max_size=6))
def test_a_privacy_config_without_an_audit_log_is_refused(blank: str) -> None:
    with pytest.raises(ValueError, match="audit_file"):
        PrivacyConfig(audit_file=blank).validate()


@pytest.mark.parametrize("tree", [False, True])
def test_umbra_run_without_an_audit_log_is_one_line_and_non_zero(tmp_path: Path, capsys, tree: bool) -> None:
    shared = Path(__import__("os").environ.get("UMBRA_DATA_DIR", "/work/shared/data"))
    cfg = {"device": {"state_dir": str(tmp_path / "state")},
           "camera": {"kind": "video", "source": str(shared / "video/vtest.avi")},
           "detector": {"kind": "scripted", "ground_truth": str(shared / "mot/MOT15/PETS09-S2L1/gt/gt.txt")},
           "output": {"aggregates_file": str(tmp_path / "agg.jsonl")},
           "privacy": {"window_s": 60, "budget_file": str(tmp_path / "b.sqlite"), "audit_file": "",
                       "tree_enabled": tree},
           "samples": {"enabled": False}}
    path = tmp_path / "umbra.toml"
    path.write_text(to_toml(cfg))
    code = main(["run", "--config", str(path), "--max-frames", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "audit_file" in err[0], err
    assert not (tmp_path / "agg.jsonl").exists() and not (tmp_path / "b.sqlite").exists()

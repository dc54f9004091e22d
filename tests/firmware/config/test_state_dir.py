"""Every state file under `[device] state_dir` unless set otherwise; tests write only in their tmp folders."""

from __future__ import annotations

from pathlib import Path

from firmware.config import load, state_file
from firmware.privacy.audit import audit_log_for
from tests import conftest


def test_audit_log_and_budget_store_follow_state_dir(tmp_path: Path) -> None:
    cfg_file = tmp_path / "umbra.toml"
    cfg_file.write_text(f'[device]\nstate_dir = "{tmp_path / "state"}"\n')
    cfg = load(cfg_file)
    log = audit_log_for(cfg, tmp_path)
    assert log is not None and log.path == tmp_path / "state" / "audit.jsonl"
    assert state_file(cfg.privacy.budget_file, cfg.device.state_dir, tmp_path) == \
        tmp_path / "state" / "privacy_budget.sqlite"
    assert not str(cfg.privacy.budget_file).startswith("/var/lib/umbra")


def test_an_explicit_path_still_wins(tmp_path: Path) -> None:
    assert state_file(str(tmp_path / "b.sqlite"), "/elsewhere", tmp_path) == tmp_path / "b.sqlite"
    assert state_file("rel/b.sqlite", "/elsewhere", tmp_path) == tmp_path / "rel" / "b.sqlite"


def test_the_guard_records_a_write_to_var_lib_umbra() -> None:
    conftest._audit_writes("open", ("/var/lib/umbra/audit.jsonl", "ab", 0))
    conftest._audit_writes("open", ("/var/lib/umbra/audit.jsonl", "rb", 0))  # reading is not writing
    assert conftest._written == ["/var/lib/umbra/audit.jsonl"]
    conftest._written.clear()  # else this test itself fails, as it should for a real write

"""Every state file under `[device] state_dir` unless set otherwise (`{state_dir}` expanded when the config is
built); moving or deleting the state folder does not give a day's epsilon again unnoticed; tests write only in
their tmp folders (tests/conftest.py)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from cloud.privacy_watch import PrivacyWatch
from firmware.config import UmbraConfig, load, parse, resolve_path
from firmware.errors import ConfigError
from firmware.privacy.accountant import Accountant
from firmware.privacy.audit import audit_log_for
from tests import conftest

STATE_FILES = {  # every path of the config that is the device's own state, and where it goes by default
    ("privacy", "budget_file"): "privacy_budget.sqlite",
    ("privacy", "audit_file"): "audit.jsonl",
    ("sync", "outbox", "path"): "outbox.sqlite",
    ("sync", "uploader", "keyring_file"): "keys.json",
    ("sync", "tls", "ca_file"): "pki/ca.pem",
    ("sync", "tls", "cert_file"): "pki/device.pem",
    ("sync", "tls", "key_file"): "pki/device.key",
    ("sync", "tls", "pins_file"): "pki/pins.json",
    ("ota", "state_dir"): "ota",
    ("ota", "trusted_root"): "provisioning/ota_root.json",
}
DAY = 20_000 * 86_400.0


def _get(cfg: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        cfg = getattr(cfg, name)
    return cfg


def _strings(obj: Any, path: str = "") -> list[tuple[str, str]]:
    """(key path, value) of every string anywhere in a config."""
    if isinstance(obj, str):
        return [(path, obj)]
    if isinstance(obj, tuple):
        return [s for i, v in enumerate(obj) for s in _strings(v, f"{path}[{i}]")]
    if dataclasses.is_dataclass(obj):
        return [s for f in dataclasses.fields(obj) for s in _strings(getattr(obj, f.name), f"{path}.{f.name}")]
    return []


def _config(tmp: Path, state: Path, extra: str = "") -> UmbraConfig:
    f = tmp / "umbra.toml"
    f.write_text(f'[device]\nstate_dir = "{state}"\n{extra}')
    return load(f)


@pytest.mark.parametrize("key", list(STATE_FILES), ids=".".join)
def test_every_state_file_defaults_under_state_dir(tmp_path: Path, key: tuple[str, ...]) -> None:
    cfg = _config(tmp_path, tmp_path / "state")
    assert Path(_get(cfg, key)) == tmp_path / "state" / STATE_FILES[key]


def test_no_path_of_the_default_config_is_outside_state_dir() -> None:
    cfg = UmbraConfig()
    home = os.path.expanduser(cfg.device.state_dir)
    paths = [(k, v) for k, v in _strings(cfg) if v.startswith(("/", "~", "{"))]
    assert {k for k, _ in paths} >= {"." + ".".join(k) for k in STATE_FILES}
    assert [(k, v) for k, v in paths if not v.startswith(home + os.sep) and k != ".device.state_dir"] == []
    assert not any("{state_dir}" in v or "/var/lib/umbra" in v for _, v in _strings(cfg))


def test_state_dir_expands_home_and_an_explicit_path_still_wins(tmp_path: Path) -> None:
    cfg = parse('[device]\nstate_dir = "~/s"\n[sync.outbox]\npath = "/data/ob.sqlite"\n'
                '[privacy]\nbudget_file = "{state_dir}/b/budget.sqlite"\naudit_file = "rel/audit.jsonl"\n')
    assert cfg.sync.outbox.path == "/data/ob.sqlite"
    assert cfg.privacy.budget_file == os.path.expanduser("~/s/b/budget.sqlite")
    assert resolve_path(cfg.privacy.audit_file, tmp_path) == tmp_path / "rel" / "audit.jsonl"
    assert cfg.sync.uploader.keyring_file == os.path.expanduser("~/s/keys.json")


def test_the_files_that_open_state_use_the_expanded_paths(tmp_path: Path) -> None:
    cfg = _config(tmp_path, tmp_path / "state")
    log = audit_log_for(cfg, tmp_path)
    assert log is not None and log.path == tmp_path / "state" / "audit.jsonl"
    Accountant(resolve_path(cfg.privacy.budget_file, tmp_path), {"flow": 1}).close()
    assert sorted(p.name for p in (tmp_path / "state").iterdir())[:2] == ["audit.jsonl", "privacy_budget.sqlite"]


@pytest.mark.parametrize("bad", ["", "{state_dir}/x"])
def test_a_state_dir_that_is_no_folder_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="device.*state_dir"):
        parse(f'[device]\nstate_dir = "{bad}"\n')


def _spend_day(cfg: UmbraConfig, base: Path, budget: int, tries: int = 0) -> tuple[int, Accountant]:
    log = audit_log_for(cfg, base)
    acc = Accountant(resolve_path(cfg.privacy.budget_file, base), {"flow": budget}, ledger=log)
    return sum(acc.charge("flow", 1, DAY + i).granted for i in range(tries or budget + 2)), acc


def test_moving_state_dir_while_the_audit_log_stays_refuses_the_day_again(tmp_path: Path) -> None:
    """The budget store moves with state_dir; the log, set elsewhere, is the ledger of record: nothing is
    granted twice and the mismatch is recorded in the log."""
    log_line = f'[privacy]\naudit_file = "{tmp_path / "kept" / "audit.jsonl"}"\n'
    granted, acc = _spend_day(_config(tmp_path, tmp_path / "a", log_line), tmp_path, 3)
    acc.close()
    shutil.rmtree(tmp_path / "a")  # the state folder deleted, or the config pointed at a fresh one
    again, acc = _spend_day(_config(tmp_path, tmp_path / "b", log_line), tmp_path, 3)
    acc.close()
    assert (granted, again) == (3, 0)
    assert "budget_store_behind_log" in (tmp_path / "kept" / "audit.jsonl").read_text()


def test_moving_the_whole_state_dir_is_flagged_by_the_cloud(tmp_path: Path) -> None:
    """Store and log both in state_dir, both gone: the device alone cannot tell a new device from a wiped one,
    but the head counter the cloud saw goes backwards and its own ledger sees the day spent twice."""
    watch = PrivacyWatch(tmp_path / "watch.sqlite", daily_budget={"flow": 3})

    def upload(cfg: UmbraConfig, granted: int, t: float) -> list[str]:
        log = audit_log_for(cfg, tmp_path)
        assert log is not None
        records = [{"schema": "umbra.aggregate/1", "metric": "flow", "zone": "all", "window_start": int(DAY) + 60 * i,
                    "window_s": 60, "epsilon": 1} for i in range(granted)]
        return [f["kind"] for f in watch.observe("d1", {"audit_head": log.head, "records": records}, t)]

    first = _config(tmp_path, tmp_path / "a")
    granted, acc = _spend_day(first, tmp_path, 3)
    acc.close()
    assert upload(first, granted, 1.0) == []
    shutil.rmtree(tmp_path / "a")
    moved = _config(tmp_path, tmp_path / "b")
    again, acc = _spend_day(moved, tmp_path, 3, tries=1)  # the first release after the move is uploaded
    acc.close()
    assert again == 1  # the device cannot tell ...
    assert upload(moved, 1, 2.0) == ["audit_rewound", "released_twice"]  # ... the cloud can


def test_the_guard_records_a_write_outside_the_tmp_folder(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[3]
    conftest._audit_writes("open", ("/var/lib/umbra/audit.jsonl", "ab", 0))
    conftest._audit_writes("open", ("/var/lib/umbra/audit.jsonl", "rb", 0))  # reading is not writing
    conftest._audit_writes("open", ("/tmp/umbra-state.json", None, os.O_WRONLY | os.O_CREAT))  # os.open
    made = repo / f"out-{uuid.uuid4().hex}"  # a mkdir of a folder that is there (the bench's out/) writes nothing
    conftest._audit_writes("os.mkdir", (str(made), 0o777, None))
    conftest._audit_writes("os.rename", (str(tmp_path / "a"), "/etc/umbra.toml", None, None))
    conftest._audit_writes("open", (str(tmp_path / "x"), "wb", 0))  # the test's own folder
    conftest._audit_writes("os.remove", ("name", 5))  # relative to a folder's fd: shutil.rmtree's own
    fd, scratch = tempfile.mkstemp()  # tempfile's folder is the test's scratch folder
    os.close(fd)
    assert conftest._written == ["/var/lib/umbra/audit.jsonl", "/tmp/umbra-state.json", str(made),
                                 "/etc/umbra.toml"]
    assert not conftest._outside(scratch) and not conftest._outside(str(tmp_path / "y"))
    conftest._written.clear()  # else this test itself fails, as it should for a real write

"""An audit log that cannot be rewound: the signed head carries a monotonic counter and a high-water mark is
kept beside the log; a missing or older head is recorded as tampering for good, and `umbra audit verify
--cert` names both rewinds (the log cut back to its first entry with its head deleted; log and head rolled
back to an earlier snapshot, against the mark or the counter the cloud saw)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from firmware.cli.main import main
from firmware.privacy import audit
from trust import pki
from trust.devicekey import KeyFileSigner

NOW = dt.datetime(2027, 1, 15, tzinfo=dt.UTC)


@pytest.fixture()
def device(tmp_path: Path) -> tuple[Path, Path]:
    ca_key, ca = pki.make_ca("test CA", NOW)
    key = pki.make_key()
    cert = pki.issue_cert(ca_key, ca, key.public_key(), "dev-1", NOW, client=True)
    pki.write_atomic(tmp_path / "device.key", pki.key_pem(key), private=True)
    pki.write_atomic(tmp_path / "device.pem", pki.cert_pem(cert))
    return tmp_path / "device.key", tmp_path / "device.pem"


def _log(path: Path, key_file: Path, n: int, t0: float = 1000.0) -> audit.AuditLog:
    log = audit.AuditLog(path, signer=KeyFileSigner(key_file))
    for i in range(n):
        log.append("budget_spent", t0 + i, stream="occupancy", epsilon=1)
    return log


def _verify_cli(path: Path, cert: Path, capsys, *extra: str) -> tuple[int, str]:
    rc = main(["audit", "verify", str(path), "--cert", str(cert), *extra])
    return rc, capsys.readouterr().out


def test_heads_carry_a_counter_that_only_grows(tmp_path: Path, device) -> None:
    path = tmp_path / "s" / "audit.jsonl"
    log = _log(path, device[0], 3)
    assert log.head is not None and log.head["counter"] == log.counter == 4  # audit_signing + 3
    again = _log(path, device[0], 2)
    assert again.counter == 6 and json.loads((path.parent / "audit.jsonl.hwm").read_bytes())["counter"] == 6
    assert audit.verify(path, cert=device[1]).ok


def test_log_cut_to_its_first_entry_with_the_head_deleted(tmp_path: Path, device, capsys) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path, device[0], 6)
    first = path.read_bytes().split(b"\n")[0]
    path.write_bytes(first + b"\n")
    (tmp_path / "audit.jsonl.head").unlink()
    (tmp_path / "audit.jsonl.hwm").unlink()  # the attacker removes everything that says more was there
    rc, out = _verify_cli(path, device[1], capsys)
    assert rc == 1 and "no head file" in out
    _log(path, device[0], 1, t0=5000.0)  # the sensor restarts on the cut log: recorded for good
    events = [json.loads(x) for x in path.read_text().splitlines()]
    assert [e["event"] for e in events][1] == "audit_tamper_found"
    assert "head was deleted" in events[1]["fields"]["problems"][0]
    rc, out = _verify_cli(path, device[1], capsys)
    assert rc == 1 and "found it damaged" in out


def test_log_and_head_rolled_back_to_a_snapshot(tmp_path: Path, device, capsys) -> None:
    state = tmp_path / "state"
    path = state / "audit.jsonl"
    _log(path, device[0], 3)
    shutil.copytree(state, tmp_path / "snap")
    seen_by_cloud = _log(path, device[0], 5).counter  # the cloud recorded this counter with the last batch
    for name in ("audit.jsonl", "audit.jsonl.head"):  # (log, head) rolled back; the mark is left
        shutil.copy(tmp_path / "snap" / name, state / name)
    rc, out = _verify_cli(path, device[1], capsys)
    assert rc == 1 and "rolled back" in out
    shutil.copy(tmp_path / "snap" / "audit.jsonl.hwm", state / "audit.jsonl.hwm")  # every file rolled back
    assert audit.verify(path, cert=device[1]).ok  # consistent on its own...
    rc, out = _verify_cli(path, device[1], capsys, "--seen-counter", str(seen_by_cloud))
    assert rc == 1 and f"below the {seen_by_cloud} cloud" in out  # ...not against the cloud's counter


def test_a_device_opening_a_rolled_back_log_records_it(tmp_path: Path, device) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path, device[0], 2)
    snap = {n: (tmp_path / n).read_bytes() for n in ("audit.jsonl", "audit.jsonl.head")}
    _log(path, device[0], 4)
    for n, b in snap.items():
        (tmp_path / n).write_bytes(b)
    log = _log(path, device[0], 1, t0=9000.0)
    events = [json.loads(x) for x in path.read_text().splitlines()]
    assert events[3]["event"] == "audit_tamper_found" and "rolled back" in events[3]["fields"]["problems"][0]
    assert log.counter > 7  # the counter never goes back, even on a rolled-back log
    assert not audit.verify(path, cert=device[1]).ok

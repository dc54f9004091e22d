"""The privacy audit log: every kind of tampering is detected; resuming keeps the chain; the CLI says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.privacy import audit
from firmware.privacy.frameaudit import FrameAudit
from firmware.samples.authorization import public_key_b64


def _make_log(tmp_path: Path, n: int = 6, signer=None) -> Path:
    path = tmp_path / "audit.jsonl"
    log = audit.AuditLog(path, signer=signer)
    for i in range(n):
        log.append("records_released", 1000.0 + i, stream="occupancy", count=i, epsilon=0.5)
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def test_intact_log_verifies(tmp_path: Path) -> None:
    path = _make_log(tmp_path)
    result = audit.verify(path)
    assert result.ok and result.entries == 6 and result.problems == ()


@pytest.mark.parametrize("index", range(6))
def test_editing_any_entry_is_detected(tmp_path: Path, index: int) -> None:
    path = _make_log(tmp_path)
    lines = _lines(path)
    entry = json.loads(lines[index])
    entry["fields"]["count"] = 99
    lines[index] = json.dumps(entry)
    _write(path, lines)
    result = audit.verify(path)
    assert not result.ok
    assert result.first_bad_seq == index + 1
    assert "edited" in result.problems[0]


@pytest.mark.parametrize("index", range(6))
def test_deleting_any_entry_is_detected(tmp_path: Path, index: int) -> None:
    path = _make_log(tmp_path)
    lines = _lines(path)
    del lines[index]
    _write(path, lines)
    result = audit.verify(path)
    assert not result.ok


@pytest.mark.parametrize("i,j", [(0, 1), (2, 4), (4, 5)])
def test_reordering_is_detected(tmp_path: Path, i: int, j: int) -> None:
    path = _make_log(tmp_path)
    lines = _lines(path)
    lines[i], lines[j] = lines[j], lines[i]
    _write(path, lines)
    result = audit.verify(path)
    assert not result.ok
    assert result.first_bad_seq == i + 1


def test_inserting_a_well_formed_entry_is_detected(tmp_path: Path) -> None:
    path = _make_log(tmp_path)
    lines = _lines(path)
    prev = json.loads(lines[2])
    forged = {"seq": prev["seq"] + 1, "t": prev["t"], "event": "records_released", "fields": {},
              "prev_hash": prev["hash"]}
    forged["hash"] = audit.entry_hash(forged)
    lines.insert(3, json.dumps(forged))
    _write(path, lines)
    result = audit.verify(path)
    assert not result.ok
    assert result.first_bad_seq == 5  # the original seq-4 entry no longer chains


def test_truncating_the_tail_is_detected_by_the_head(tmp_path: Path) -> None:
    path = _make_log(tmp_path)
    _write(path, _lines(path)[:-2])
    result = audit.verify(path)
    assert not result.ok
    assert "tail" in result.problems[-1]


def test_rewritten_chain_is_caught_only_by_the_signed_head(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = _make_log(tmp_path, signer=key.sign)
    pub = public_key_b64(key)
    assert audit.verify(path, pub).ok
    # an attacker rebuilds a consistent, shorter chain and a head without the device key
    forged_path = tmp_path / "forged" / "audit.jsonl"
    forger = audit.AuditLog(forged_path, signer=Ed25519PrivateKey.generate().sign)
    forger.append("records_released", 1000.0, stream="occupancy", count=0, epsilon=0.5)
    path.write_bytes(forged_path.read_bytes())
    (tmp_path / "audit.jsonl.head").write_bytes((tmp_path / "forged" / "audit.jsonl.head").read_bytes())
    assert "rolled back" in audit.verify(path).problems[-1]  # the high-water mark beside the log is higher
    (tmp_path / "audit.jsonl.hwm").write_bytes((tmp_path / "forged" / "audit.jsonl.hwm").read_bytes())
    assert audit.verify(path).ok  # unsigned check cannot tell a forger who rewrote every file
    result = audit.verify(path, pub)
    assert not result.ok and "signature" in result.problems[-1]


def test_reopening_resumes_the_chain_and_cuts_a_torn_line(tmp_path: Path) -> None:
    path = _make_log(tmp_path, n=3)
    with open(path, "ab") as f:
        f.write(b'{"seq": 4, "t": 1')  # crash mid-write
    log = audit.AuditLog(path)
    assert log.seq == 3
    log.append("sample_taken", 2000.0, bytes=1234)
    result = audit.verify(path)
    assert result.ok and result.entries == 4


def test_frame_audit_writes_one_entry_per_minute(tmp_path: Path) -> None:
    log = audit.AuditLog(tmp_path / "a.jsonl")
    frames = FrameAudit(log)
    for i in range(1500):  # 150 s at 10 fps
        frames.count(6000.0 + i / 10, processed=1, destroyed=1)
    frames.flush(6150.0)
    entries = [json.loads(x) for x in _lines(tmp_path / "a.jsonl")]
    assert [e["event"] for e in entries] == ["frames"] * 3
    assert [e["fields"]["processed"] for e in entries] == [600, 600, 300]
    assert sum(e["fields"]["destroyed"] for e in entries) == 1500


def test_cli_verify_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from firmware.cli.audit import add_parser

    path = _make_log(tmp_path)
    parser = argparse.ArgumentParser()
    add_parser(parser)
    args = parser.parse_args(["verify", str(path)])
    assert args.func(args) == 0
    lines = _lines(path)
    del lines[1]
    _write(path, lines)
    assert args.func(args) == 1
    assert "TAMPERED" in capsys.readouterr().out


def test_concurrent_appends_keep_one_chain(tmp_path: Path) -> None:
    import threading

    log = audit.AuditLog(tmp_path / "a.jsonl")
    threads = [threading.Thread(target=lambda k=k: [log.append("budget_spent", 1.0, stream=k, i=i) for i in range(20)])
               for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    result = audit.verify(tmp_path / "a.jsonl")
    assert result.ok and result.entries == 80

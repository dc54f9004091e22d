"""The audit head signed by the device key (the TLS client key, ECDSA P-256, or Ed25519): truncation with a
re-written head, tail removal, restarts, key renewal, and a second writer on the same log."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.cli.main import main
from firmware.privacy import audit
from trust import pki
from trust.devicekey import KeyFileSigner, device_signer, key_b64

NOW = dt.datetime(2027, 1, 15, tzinfo=dt.UTC)


@pytest.fixture()
def device(tmp_path: Path) -> tuple[Path, Path]:
    """A device key made where it is used, and its certificate from a CA: (key file, cert file)."""
    ca_key, ca = pki.make_ca("test CA", NOW)
    key = pki.make_key()
    cert = pki.issue_cert(ca_key, ca, key.public_key(), "dev-1", NOW, client=True)
    pki.write_atomic(tmp_path / "device.key", pki.key_pem(key), private=True)
    pki.write_atomic(tmp_path / "device.pem", pki.cert_pem(cert))
    return tmp_path / "device.key", tmp_path / "device.pem"


def _fill(log: audit.AuditLog, n: int, t0: float = 1000.0) -> None:
    for i in range(n):
        log.append("budget_spent", t0 + i, stream="occupancy", epsilon=0.5)


def _lines(path: Path) -> list[bytes]:
    return [ln for ln in path.read_bytes().split(b"\n") if ln]


def _events(path: Path) -> list[str]:
    return [json.loads(ln)["event"] for ln in _lines(path)]


def test_signed_head_verifies_with_the_device_certificate(tmp_path: Path, device) -> None:
    key_file, cert_file = device
    path = tmp_path / "audit.jsonl"
    _fill(audit.AuditLog(path, signer=KeyFileSigner(key_file)), 5)
    head = json.loads((tmp_path / "audit.jsonl.head").read_bytes())
    assert head["alg"] == "ecdsa-p256-sha256" and head["seq"] == 6 and "sig" in head
    assert _events(path)[0] == "audit_signing"  # the log names the key that signs its heads
    assert audit.verify(path, cert=cert_file).ok
    assert audit.verify(path, key_b64(pki.load_cert(cert_file).public_key())).ok
    other = pki.issue_cert(*pki.make_ca("other CA", NOW), pki.make_key().public_key(), "dev-2", NOW, client=True)
    pki.write_atomic(tmp_path / "other.pem", pki.cert_pem(other))
    result = audit.verify(path, cert=tmp_path / "other.pem")
    assert not result.ok and "another key" in result.problems[-1]


@pytest.mark.parametrize("forged_head", ["unsigned", "wrong-key"])
def test_truncated_log_with_a_rewritten_head_is_detected(tmp_path: Path, device, forged_head: str) -> None:
    key_file, cert_file = device
    path = tmp_path / "audit.jsonl"
    _fill(audit.AuditLog(path, signer=KeyFileSigner(key_file)), 8)
    kept = _lines(path)[:5]
    path.write_bytes(b"\n".join(kept) + b"\n")
    last = json.loads(kept[-1])
    head = {"seq": last["seq"], "hash": last["hash"]}
    if forged_head == "wrong-key":
        rogue = Ed25519PrivateKey.generate()
        head["sig"] = base64.b64encode(rogue.sign(audit._head_message(head["seq"], head["hash"]))).decode()
        head["alg"], head["key"] = "ed25519", key_b64(rogue.public_key())
    (tmp_path / "audit.jsonl.head").write_bytes(audit.canonical(head))
    with_cert = audit.verify(path, cert=cert_file)
    assert not with_cert.ok
    assert "does not verify" in with_cert.problems[-1] or "not signed" in with_cert.problems[-1]
    # the log still names the device key, so even without the certificate the forged head does not pass
    alone = audit.verify(path)
    assert not alone.ok and ("not signed" in alone.problems[-1] or "does not verify" in alone.problems[-1])


def test_tail_removal_is_detected_by_the_signed_head(tmp_path: Path, device) -> None:
    key_file, cert_file = device
    path = tmp_path / "audit.jsonl"
    _fill(audit.AuditLog(path, signer=KeyFileSigner(key_file)), 6)
    path.write_bytes(b"\n".join(_lines(path)[:-2]) + b"\n")
    result = audit.verify(path, cert=cert_file)
    assert not result.ok and "tail" in result.problems[0] and result.first_bad_seq == 6


def test_signed_head_verifies_after_restarts(tmp_path: Path, device) -> None:
    key_file, cert_file = device
    path = tmp_path / "audit.jsonl"
    for run in range(4):  # four runs of the sensor, each resuming the chain
        log = audit.AuditLog(path, signer=KeyFileSigner(key_file))
        _fill(log, 3, t0=1000.0 + 100 * run)
        assert audit.verify(path, cert=cert_file).ok
    assert _events(path).count("audit_signing") == 1 and len(_lines(path)) == 13
    assert "audit_tamper_found" not in _events(path)


def test_a_restart_after_truncation_records_it_and_does_not_launder_it(tmp_path: Path, device) -> None:
    """Cut the tail while the sensor is off: the restarted sensor signs a fresh, valid head, so the head alone
    would pass; the note it writes on finding the damage keeps the log failing verification for good."""
    key_file, cert_file = device
    path = tmp_path / "audit.jsonl"
    _fill(audit.AuditLog(path, signer=KeyFileSigner(key_file)), 6)
    path.write_bytes(b"\n".join(_lines(path)[:-3]) + b"\n")
    log = audit.AuditLog(path, signer=KeyFileSigner(key_file))
    _fill(log, 2, t0=5000.0)
    assert "audit_tamper_found" in _events(path)
    result = audit.verify(path, cert=cert_file)
    assert not result.ok and len(result.problems) == 1 and "removed from the tail" in result.problems[0]


def test_an_unsigned_head_found_on_restart_is_recorded(tmp_path: Path, device) -> None:
    key_file, cert_file = device
    path = tmp_path / "audit.jsonl"
    _fill(audit.AuditLog(path, signer=KeyFileSigner(key_file)), 4)
    _fill(audit.AuditLog(path), 1, t0=3000.0)  # a writer without the key re-writes the head unsigned
    audit.AuditLog(path, signer=KeyFileSigner(key_file)).append("sample_taken", 4000.0, bytes=1)
    result = audit.verify(path, cert=cert_file)
    assert not result.ok and "not signed" in result.problems[0]


def test_a_crash_between_the_line_and_its_head_is_not_tampering(tmp_path: Path, device) -> None:
    key_file, cert_file = device
    path = tmp_path / "audit.jsonl"
    _fill(audit.AuditLog(path, signer=KeyFileSigner(key_file)), 4)
    head = (tmp_path / "audit.jsonl.head").read_bytes()
    mark = (tmp_path / "audit.jsonl.hwm").read_bytes()  # written after the head
    _fill(audit.AuditLog(path, signer=KeyFileSigner(key_file)), 1, t0=2000.0)
    (tmp_path / "audit.jsonl.head").write_bytes(head)  # the line made it to disk, its head did not
    (tmp_path / "audit.jsonl.hwm").write_bytes(mark)  # nor, so, the high-water mark
    _fill(audit.AuditLog(path, signer=KeyFileSigner(key_file)), 1, t0=3000.0)
    assert audit.verify(path, cert=cert_file).ok
    notes = [json.loads(x) for x in _lines(path) if b'"audit_unanchored"' in x]
    assert [n["fields"]["seq"] for n in notes] == [6]  # said in the log, not hidden


def test_key_renewal_names_the_new_key_and_the_head_follows_it(tmp_path: Path, device) -> None:
    key_file, cert_file = device
    path = tmp_path / "audit.jsonl"
    log = audit.AuditLog(path, signer=KeyFileSigner(key_file))
    _fill(log, 3)
    old_cert = cert_file.read_bytes()
    ca_key, ca = pki.make_ca("renewal CA", NOW)
    new_key = pki.make_key()
    pki.write_atomic(key_file, pki.key_pem(new_key), private=True)  # what install_renewal does
    pki.write_atomic(cert_file, pki.cert_pem(pki.issue_cert(ca_key, ca, new_key.public_key(), "dev-1", NOW,
                                                             client=True)))
    _fill(log, 2, t0=2000.0)  # the running log picks the new key up
    assert _events(path).count("audit_signing") == 2
    assert audit.verify(path, cert=cert_file).ok
    (tmp_path / "old.pem").write_bytes(old_cert)
    stale = audit.verify(path, cert=tmp_path / "old.pem")
    assert not stale.ok and "renewed" in stale.problems[0]
    _fill(audit.AuditLog(path, signer=KeyFileSigner(key_file)), 1, t0=3000.0)  # and a restart after it
    assert audit.verify(path, cert=cert_file).ok


def test_an_ed25519_device_key_signs_too(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pki.write_atomic(tmp_path / "device.key", pem, private=True)
    path = tmp_path / "audit.jsonl"
    _fill(audit.AuditLog(path, signer=KeyFileSigner(tmp_path / "device.key")), 3)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert audit.verify(path, base64.b64encode(raw).decode()).ok
    assert not audit.verify(path, key_b64(Ed25519PrivateKey.generate().public_key())).ok


def test_two_writers_on_one_log_keep_one_chain(tmp_path: Path, device) -> None:
    """The sensor and `umbra samples authorize` (another process) append to the same log."""
    key_file, cert_file = device
    path = tmp_path / "audit.jsonl"
    sensor = audit.AuditLog(path, signer=KeyFileSigner(key_file))
    sensor.append("frames", 1000.0, processed=10)
    cli = audit.AuditLog(path, signer=KeyFileSigner(key_file))
    for i in range(3):
        cli.append("authorization_accepted", 1001.0 + i, token_id=f"t{i}")
        sensor.append("frames", 1060.0 + i, processed=10)
    result = audit.verify(path, cert=cert_file)
    assert result.ok and result.entries == 8
    assert [json.loads(x)["seq"] for x in _lines(path)] == list(range(1, 9))


def test_no_device_key_runs_unsigned_and_says_so(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="trust.devicekey"):
        assert device_signer(str(tmp_path / "missing.key"), tmp_path / "audit.jsonl") is None
    assert "NOT signed" in caplog.text


def test_cli_verify_with_the_device_certificate(tmp_path: Path, device, capsys) -> None:
    key_file, cert_file = device
    path = tmp_path / "audit.jsonl"
    _fill(audit.AuditLog(path, signer=KeyFileSigner(key_file)), 3)
    assert main(["audit", "verify", str(path), "--cert", str(cert_file)]) == 0
    assert "checked against the device key" in capsys.readouterr().out
    path.write_bytes(b"\n".join(_lines(path)[:-1]) + b"\n")
    assert main(["audit", "verify", str(path), "--cert", str(cert_file)]) == 1


def test_a_log_cut_while_the_sensor_runs_is_recorded_at_its_next_append(tmp_path: Path, device) -> None:
    key_file, cert_file = device
    path = tmp_path / "audit.jsonl"
    log = audit.AuditLog(path, signer=KeyFileSigner(key_file))
    _fill(log, 6)
    path.write_bytes(b"\n".join(_lines(path)[:-2]) + b"\n")  # cut under the running writer
    _fill(log, 1, t0=3000.0)
    assert "audit_tamper_found" in _events(path)
    result = audit.verify(path, cert=cert_file)
    assert not result.ok and "removed from the tail" in result.problems[0]

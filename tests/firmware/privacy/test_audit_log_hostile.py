"""The audit log as a bad disk or an attacker leaves it: NUL bytes or garbage where complete entries were, a
zeroed file with its head deleted, garbage after the last entry. Only a torn final partial line (a write cut
after the last complete entry, perhaps padded with NULs by ext4) may be cut; everything else is detected by
both `umbra audit verify` (exit 1, naming the line) and a writer opening the log (as `umbra run` does): an
`audit_tamper_found` entry chained on after the last good entry, the damaged bytes left where they were.
Before, a writer cut a NUL block or garbage after the entries as a "torn last line" (silently with the head
deleted, the entries gone), passed NULs among the entries over, and refused to open a log whose NUL block had
swallowed a newline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from firmware.cli.main import main
from firmware.privacy.accountant import Accountant
from firmware.privacy.audit import AuditLog, verify


def _log(tmp_path: Path, n: int = 6) -> Path:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    for i in range(n):
        log.append("records_released", 1000.0 + i, kind="aggregate", count=i)
    return path


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


def _zero_all(p: Path) -> None:
    p.write_bytes(b"\0" * p.stat().st_size)


def _zero_all_no_head(p: Path) -> None:
    _zero_all(p)
    p.with_name(p.name + ".head").unlink()


def _zero_all_and_head(p: Path) -> None:
    _zero_all(p)
    head = p.with_name(p.name + ".head")
    head.write_bytes(b"\0" * head.stat().st_size)


def _zero_last(k: int) -> Callable[[Path], None]:
    def damage(p: Path) -> None:  # the last k complete entries, newlines too: NULs only after entry n - k
        data = p.read_bytes()
        keep = b"\n".join(data.split(b"\n")[:-1 - k]) + b"\n"
        p.write_bytes(keep + b"\0" * (len(data) - len(keep)))
    return damage


def _zero_line(p: Path) -> None:  # entry 3's bytes, its newline kept
    lines = _lines(p)
    lines[2] = b"\0" * len(lines[2])
    p.write_bytes(b"\n".join(lines))


def _zero_across(p: Path) -> None:  # entries 3 and 4 with the newlines between them
    data = p.read_bytes()
    lines = data.split(b"\n")
    start, stop = len(b"\n".join(lines[:2])) + 1, len(b"\n".join(lines[:4])) + 1
    p.write_bytes(data[:start] + b"\0" * (stop - start) + data[stop:])


def _garbage_line(p: Path) -> None:
    lines = _lines(p)
    lines[3] = b"x" * len(lines[3])
    p.write_bytes(b"\n".join(lines))


def _garbage_tail(p: Path) -> None:
    p.write_bytes(p.read_bytes() + b"garbage, not the start of an entry")


DAMAGE = {
    "all zeros": _zero_all, "all zeros, head deleted": _zero_all_no_head, "all zeros, head zeroed": _zero_all_and_head,
    "last entry zeroed": _zero_last(1), "last two zeroed": _zero_last(2), "a line zeroed": _zero_line,
    "zeros across lines": _zero_across, "a garbage line": _garbage_line, "garbage tail": _garbage_tail,
}


@pytest.mark.parametrize("name", DAMAGE)
def test_damage_in_place_of_entries_is_detected_by_verify_and_by_the_writer(tmp_path: Path, name: str) -> None:
    path = _log(tmp_path)
    DAMAGE[name](path)
    damaged = path.read_bytes()
    assert not verify(path).ok
    assert main(["audit", "verify", str(path)]) == 1
    log = AuditLog(path)  # what `umbra run` does first
    assert log.tamper_found, "the damage must be found on opening, not repaired as a torn line"
    assert path.read_bytes().startswith(damaged), "the damaged bytes are kept, not cut"
    log.append("frames", 2000.0, processed=1)
    result = verify(path)
    assert not result.ok and any("found it damaged" in p for p in result.problems)
    assert main(["audit", "verify", str(path)]) == 1
    events = [e for e in _lines(path) if e.startswith(b'{"event"')]
    assert events[-2].startswith(b'{"event":"audit_tamper_found"') and events[-1].startswith(b'{"event":"frames"')
    # the chain goes on after the damage: the entries written since add no problem of their own
    assert AuditLog(path).tamper_found == ()


@pytest.mark.parametrize("tail", [b"\0" * 4096, b'{"event":"records_released","fie', b'{"event":"fr' + b"\0" * 300,
                                  b'{"seq": 7, "t": 1'])
def test_a_torn_last_line_alone_is_cut_and_verifies(tmp_path: Path, tail: bytes) -> None:
    path = _log(tmp_path)
    with path.open("ab") as f:
        f.write(tail)  # a power cut mid-write, after the last complete entry; ext4 may pad it with NULs
    before = verify(path)
    assert before.ok and before.torn_tail == len(tail) and before.entries == 6
    assert main(["audit", "verify", str(path)]) == 0
    log = AuditLog(path)
    assert log.tamper_found == () and log.seq == 6
    log.append("frames", 2000.0, processed=1)
    after = verify(path)
    assert after.ok and after.entries == 7 and after.torn_tail == 0


def test_zeroed_entries_hold_the_days_budget(tmp_path: Path) -> None:
    """The spends the zeros may have held cannot be known: the ledger trusts none more that day."""
    path = _log(tmp_path)
    _zero_last(2)(path)
    log = AuditLog(path)
    acc = Accountant(tmp_path / "budget.sqlite", {"flow": 1.0}, ledger=log)
    assert not acc.charge("flow", 0.1, 2000.0).granted

"""Data-subject requests answered from what is held (a real SQLite store behind the Protocol), and the DPIA
generated from the running config (a plain mapping and the integrator's dataclass both work)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from firmware.errors import ComplianceError
from firmware.privacy import audit
from firmware.privacy.compliance import HeldItem, SubjectRequest, answer_access, answer_erasure

T0 = 1_800_000_000


class SqliteStore:
    """A stand-in for the outbox: the same Protocol over a real SQLite table."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE held (kind TEXT, t REAL, zone TEXT, size INTEGER)")

    def put(self, kind: str, t: float, zone: str | None, size: int = 100) -> None:
        with self.db:
            self.db.execute("INSERT INTO held VALUES (?, ?, ?, ?)", (kind, t, zone, size))

    def held(self, start: float, end: float):
        rows = self.db.execute("SELECT kind, t, zone, size FROM held WHERE t >= ? AND t < ?", (start, end))
        return [HeldItem(*r) for r in rows]

    def erase(self, start: float, end: float, kinds) -> int:
        marks = ",".join("?" * len(kinds))
        with self.db:
            cur = self.db.execute(f"DELETE FROM held WHERE t >= ? AND t < ? AND kind IN ({marks})",
                                  (start, end, *kinds))
        return cur.rowcount


@pytest.fixture()
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "outbox.sqlite")
    for i in range(10):
        s.put("track", T0 + 60 * i, "entrance" if i % 2 else "till")
    s.put("aggregate", T0 + 900, "entrance")
    s.put("sample", T0 + 1234, None, 30000)
    s.put("sample", T0 + 90000, None, 30000)  # outside the range
    return s


def test_access_reports_what_is_held_in_range_and_is_audited(store: SqliteStore, tmp_path: Path) -> None:
    log = audit.AuditLog(tmp_path / "audit.jsonl")
    req = SubjectRequest("r-1", "access", T0, T0 + 3600)
    ans = answer_access(req, store, log, T0 + 5000)
    assert ans.held == {"sample": 1, "track": 10, "aggregate": 1, "flowgroups": 0, "demographics": 0}
    assert ans.sample_times == (T0 + 1234,)
    assert "cannot single out" in ans.statement and "1 hour" in ans.statement
    md = ans.to_markdown()
    assert "| track | 10 |" in md and "r-1" in md
    zoned = answer_access(SubjectRequest("r-2", "access", T0, T0 + 3600, zone="till"), store, log, T0 + 5001)
    assert zoned.held["track"] == 5 and zoned.held["sample"] == 1  # samples have no zone: always included
    assert '"dsr_access"' in (tmp_path / "audit.jsonl").read_text() and audit.verify(tmp_path / "audit.jsonl").ok


def test_erasure_removes_everything_held_in_range_only(store: SqliteStore, tmp_path: Path) -> None:
    log = audit.AuditLog(tmp_path / "audit.jsonl")
    ans = answer_erasure(SubjectRequest("r-3", "erasure", T0, T0 + 3600), store, log, T0 + 5000)
    assert ans.held == {"sample": 1, "track": 10, "aggregate": 1, "flowgroups": 0, "demographics": 0}
    left = store.held(0, 2 * T0)
    assert [i.t for i in left] == [T0 + 90000]
    assert answer_access(SubjectRequest("r-4", "access", T0, T0 + 3600), store, log, T0 + 5001).held["track"] == 0
    assert '"dsr_erasure"' in (tmp_path / "audit.jsonl").read_text()


@pytest.mark.parametrize("req", [
    SubjectRequest("x", "rectify", T0, T0 + 10),
    SubjectRequest("x", "access", T0, T0),
    SubjectRequest("x", "access", T0, T0 + 40 * 86400),
    SubjectRequest("x", "access", T0, T0 + 10, kinds=("faces",)),
])
def test_malformed_requests_are_refused(req: SubjectRequest, store: SqliteStore, tmp_path: Path) -> None:
    with pytest.raises(ComplianceError, match="request x"):
        answer_access(req, store, audit.AuditLog(tmp_path / "a.jsonl"), T0)

"""Data-subject requests answered from what is held (a real SQLite store behind the Protocol), and the DPIA
generated from the running config (a plain mapping and the integrator's dataclass both work)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from firmware.privacy import audit
from firmware.privacy.compliance import (
    ComplianceError,
    HeldItem,
    SubjectRequest,
    answer_access,
    answer_erasure,
    generate_dpia,
    lookup,
)
from firmware.samples.authorization import Grant

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
    assert ans.held == {"sample": 1, "track": 10, "aggregate": 1, "flowgroups": 0}
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
    assert ans.held == {"sample": 1, "track": 10, "aggregate": 1, "flowgroups": 0}
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


def test_dpia_from_a_plain_mapping_states_the_running_config() -> None:
    cfg = {"device": {"id": "shop-7"}, "privacy": {"profile": "aggregates"},
           "analytics": {"k": 5, "epsilon": 1.0, "epsilon_per_day": 8.0, "window_s": 900},
           "pseudonym": {"rotate_s": 1800}, "samples": {"enabled": True, "rate_per_hour": 1, "retention_days": 7},
           "authorization": {"customer_public_key": "", "max_rate_per_hour": 6},
           "flowgroups": {"enabled": True, "min_count": 5}}
    md = generate_dpia(cfg, grants=[Grant("tok-1", "shop-7", 4, T0, T0 + 86400)], now=T0)
    assert md.startswith("# Data-protection impact assessment: Umbra sensor shop-7")
    assert "**aggregates** (only aggregates leave)" in md
    assert "k = 5" in md and "epsilon = 1.0 per release, 8.0 per day" in md
    assert "quantized tracks (pseudonym" not in md  # the aggregates profile sends no tracks
    assert "at most 7 days" in md and "token tok-1: 4 per hour" in md and "customer-flow group" in md


def test_dpia_from_attribute_style_config() -> None:
    """The integrator's config is nested frozen dataclasses: attribute access works the same as a mapping."""
    from dataclasses import dataclass, field

    @dataclass(frozen=True)
    class Pseudonym:
        rotate_s: float = 3600.0

    @dataclass(frozen=True)
    class Quantize:
        grid_m: float = 0.5
        time_bucket_s: int = 5

    @dataclass(frozen=True)
    class Device:
        id: str = "bench-0001"

    @dataclass(frozen=True)
    class Config:
        device: Device = field(default_factory=Device)
        pseudonym: Pseudonym = field(default_factory=Pseudonym)
        quantize: Quantize = field(default_factory=Quantize)

    cfg = Config()
    md = generate_dpia(cfg)
    assert "**tracks**" in md and "every 3600 s" in md and "cells of 0.5 m, time buckets of 5 s" in md
    assert lookup(cfg, "nope.x", "device.id") == "bench-0001" and lookup(cfg, "a.b", default=3) == 3


def test_dpia_of_the_real_config_states_the_daily_budget_the_accountant_derives() -> None:
    """privacy.daily_epsilon = 0 means epsilon times the windows of a day: the DPIA says that number."""
    from firmware.config import load

    cfg = load(Path(__file__).resolve().parents[3] / "bench" / "configs" / "pets09.toml")
    md = generate_dpia(cfg)
    assert "epsilon = 1.0 per release, 1440 (epsilon times the 1440 windows of a day) per day" in md
    assert cfg.privacy.budgets()["occupancy"] == 1440

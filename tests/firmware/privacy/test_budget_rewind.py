"""A budget that cannot be rewound: each attack of bench.privacy_attacks (real signed audit log, real SQLite
store, the cloud's PrivacyWatch) is detected and recorded, and no epsilon is spent twice on the device; when
every file is rolled back together (the device cannot tell), the cloud flags it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.privacy_attacks import ATTACKS, BUDGET, run
from firmware.privacy.accountant import Accountant
from firmware.privacy.audit import AuditLog, verify

ON_DEVICE = {
    "budget store deleted": ["budget_store_behind_log"],
    "budget store edited": ["budget_store_behind_log"],
    "clock moved back a day": ["budget_clock_back"],
    "log cut to 1st entry, head deleted": ["audit_tamper_found", "budget_day_withheld"],
    "(log, head, store) rolled back": ["audit_tamper_found", "budget_day_withheld"],
}


@pytest.mark.parametrize("name", list(ON_DEVICE))
def test_each_attack_is_recorded_and_no_epsilon_is_spent_twice(tmp_path: Path, name: str) -> None:
    r = run(name, tmp_path)
    assert r["recorded"] == ON_DEVICE[name]
    assert r["granted"] <= BUDGET and not r["twice"]


def test_every_file_rolled_back_together_is_flagged_by_the_cloud(tmp_path: Path) -> None:
    forks = {n for n in ATTACKS if n.startswith("fork")}  # tests/cloud/test_privacy_watch.py runs those
    assert set(ATTACKS) == {*ON_DEVICE, "every file rolled back (+ mark)", *forks} and len(forks) == 3
    r = run("every file rolled back (+ mark)", tmp_path)
    assert r["recorded"] == [] and r["twice"]  # a consistent snapshot: the device alone cannot tell
    # the head's counter went back (rewound), then the log was written up to the counter the cloud held with
    # other entries (forked), and the day's releases passed the budget
    assert r["cloud"] == ["audit_forked", "audit_rewound", "budget_passed"]


def test_spends_are_chained_into_the_signed_log(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    acc = Accountant(tmp_path / "b.sqlite", {"flow": 2}, ledger=log)
    t = 20_000 * 86_400.0
    assert [acc.charge("flow", 1, t + i).granted for i in range(3)] == [True, True, False]
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert ['"spent":"1"' in lines[0], '"spent":"2"' in lines[1], len(lines)] == [True, True, 2]
    assert verify(tmp_path / "audit.jsonl").ok
    acc.close()
    again = Accountant(tmp_path / "b.sqlite", {"flow": 2}, ledger=AuditLog(tmp_path / "audit.jsonl"))
    assert again.spent("flow", t) == 2 and not again.charge("flow", 1, t + 9).granted

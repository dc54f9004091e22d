"""The cloud's own watch over each device's privacy promises, from the batches it accepts.

- Audit log: every batch carries the device's signed audit head; the watch keeps the highest counter seen per
  device and flags a device whose head counter goes backwards (its log and head rolled back or deleted).
- Epsilon ledger: the cloud sees every release, so it keeps its own per-device ledger, per stream (metric) and
  UTC day, of the epsilon the releases spent (one charge per window, as the device's accountant makes it),
  and flags a window released twice (epsilon spent twice: a device whose budget store was rewound) and a day
  whose releases pass the budget (`daily_budget`, or epsilon times the windows in a day).

SQLite, one file beside the cloud's store; flags are kept for good.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DAY_S = 86_400

_DDL = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS audit_heads (device_id TEXT PRIMARY KEY, counter INTEGER NOT NULL, seq INTEGER NOT NULL,
  hash TEXT NOT NULL, t REAL NOT NULL);
CREATE TABLE IF NOT EXISTS releases (device_id TEXT NOT NULL, metric TEXT NOT NULL, zone TEXT NOT NULL,
  window_start INTEGER NOT NULL, window_s INTEGER NOT NULL, epsilon TEXT NOT NULL,
  PRIMARY KEY (device_id, metric, zone, window_start));
CREATE TABLE IF NOT EXISTS windows (device_id TEXT NOT NULL, metric TEXT NOT NULL, window_start INTEGER NOT NULL,
  window_s INTEGER NOT NULL, epsilon TEXT NOT NULL, PRIMARY KEY (device_id, metric, window_start));
CREATE TABLE IF NOT EXISTS flags (device_id TEXT NOT NULL, t REAL NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
"""


class PrivacyWatch:
    """`observe(device, batch, now)` after a new batch is stored; returns the flags it raised (also kept)."""

    def __init__(self, path: str | Path, daily_budget: Mapping[str, float] | None = None) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
        self._db.executescript(_DDL)
        self._lock = threading.Lock()
        self.daily_budget = {k: Fraction(str(v)) for k, v in (daily_budget or {}).items()}

    def close(self) -> None:
        self._db.close()

    def observe(self, device: str, batch: Mapping[str, Any], now: float) -> list[dict[str, Any]]:
        raised: list[tuple[str, str]] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                head = batch.get("audit_head")
                if isinstance(head, Mapping):
                    raised += self._head(device, head, now)
                aggregates = [r for r in batch.get("records", ()) if r.get("schema") == "umbra.aggregate/1"]
                raised += self._releases(device, aggregates)
                for kind, detail in raised:
                    self._db.execute("INSERT INTO flags VALUES (?, ?, ?, ?)", (device, now, kind, detail))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        for kind, detail in raised:
            log.error("device %s: %s: %s", device, kind, detail)
        return [{"device_id": device, "kind": k, "detail": d} for k, d in raised]

    def _head(self, device: str, head: Mapping[str, Any], now: float) -> list[tuple[str, str]]:
        counter = int(head.get("counter", head.get("seq", 0)))
        row = self._db.execute("SELECT counter, seq FROM audit_heads WHERE device_id=?", (device,)).fetchone()
        if row is not None and counter < row[0]:
            return [("audit_rewound", f"audit head counter {counter} (seq {head.get('seq')}) after {row[0]} "
                                      f"(seq {row[1]}): the device's audit log went backwards")]
        self._db.execute("INSERT OR REPLACE INTO audit_heads VALUES (?, ?, ?, ?, ?)",
                         (device, counter, int(head.get("seq", 0)), str(head.get("hash", "")), now))
        return []

    def _releases(self, device: str, records: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
        raised: list[tuple[str, str]] = []
        days: set[tuple[str, int]] = set()
        for r in records:
            metric, zone, start, span = str(r["metric"]), str(r["zone"]), int(r["window_start"]), int(r["window_s"])
            eps = Fraction(str(r["epsilon"]))
            if eps <= 0:
                continue
            try:
                self._db.execute("INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?)",
                                 (device, metric, zone, start, span, str(eps)))
            except sqlite3.IntegrityError:
                raised.append(("released_twice", f"{metric} of zone {zone} for the window at {start} released "
                                                 "again: epsilon spent twice (budget store rewound?)"))
                continue
            row = self._db.execute("SELECT epsilon FROM windows WHERE device_id=? AND metric=? AND window_start=?",
                                   (device, metric, start)).fetchone()
            if row is None or Fraction(row[0]) < eps:  # one charge per window and stream, as the device makes it
                self._db.execute("INSERT OR REPLACE INTO windows VALUES (?, ?, ?, ?, ?)",
                                 (device, metric, start, span, str(eps)))
            days.add((metric, start // DAY_S))
        for metric, day in sorted(days):
            raised += self._day_budget(device, metric, day)
        return raised

    def _day_budget(self, device: str, metric: str, day: int) -> list[tuple[str, str]]:
        rows = self._db.execute("SELECT window_s, epsilon FROM windows WHERE device_id=? AND metric=? AND "
                                "window_start >= ? AND window_start < ?",
                                (device, metric, day * DAY_S, (day + 1) * DAY_S)).fetchall()
        spent = sum((Fraction(e) for _, e in rows), Fraction(0))
        budget = self.daily_budget.get(metric) or max(Fraction(e) * (DAY_S // max(1, s)) for s, e in rows)
        if spent <= budget:
            return []
        return [("budget_passed", f"{metric} on day {day}: releases spent epsilon {float(spent):.4g}, "
                                  f"past the budget {float(budget):.4g}")]

    def ledger(self, device: str) -> dict[str, dict[int, Fraction]]:
        """Epsilon spent per metric and UTC day, as the cloud saw it."""
        out: dict[str, dict[int, Fraction]] = {}
        for metric, start, eps in self._db.execute(
                "SELECT metric, window_start, epsilon FROM windows WHERE device_id=?", (device,)):
            day = out.setdefault(metric, {})
            day[start // DAY_S] = day.get(start // DAY_S, Fraction(0)) + Fraction(eps)
        return out

    def last_counter(self, device: str) -> int | None:
        row = self._db.execute("SELECT counter FROM audit_heads WHERE device_id=?", (device,)).fetchone()
        return int(row[0]) if row else None

    def flags(self, device: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT device_id, t, kind, detail FROM flags" + (" WHERE device_id=?" if device else "") + " ORDER BY t"
        return [{"device_id": d, "t": t, "kind": k, "detail": x}
                for d, t, k, x in self._db.execute(q, (device,) if device else ())]

    def to_json(self, device: str) -> str:
        return json.dumps({"last_counter": self.last_counter(device), "flags": self.flags(device)})

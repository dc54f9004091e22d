"""The privacy budget accountant: epsilon spent per stream per UTC day, kept in SQLite (WAL, synchronous FULL)
so that a restart or a power cut never refreshes a budget. Spending is all or nothing: a release that would
pass the day's budget is refused before any noise is drawn, and the stream releases nothing more that day.

Composition: sequential (basic) composition of pure epsilon-DP releases within a stream and day; each
release is itself one mechanism over a vector of counts whose L1 sensitivity the caller states. Amounts are
exact fractions (stored as "numerator/denominator"), so no rounding ever creeps into the budget.

A budget that cannot be rewound: given the signed audit log (`ledger=`), every granted spend is first chained
into it as an `epsilon_spent` entry (stream, day, epsilon, the day's total after it), then committed to the
store. The log is the ledger of record: on opening, and before every charge, the store is checked against
it. A store behind the log (deleted, edited down, or a crash between the two writes) is recorded
(`budget_store_behind_log`), nothing is released in that charge, and the store is repaired up to the log, so
no epsilon is ever spent twice. A day earlier than the latest day ever charged (the clock moved back) is
refused and recorded (`budget_clock_back`). Rewinding the log itself is the audit log's to catch (its head
counter, high-water mark, and the cloud's last counter; the cloud also keeps its own epsilon ledger).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from firmware.errors import AuditError, BudgetError
from firmware.privacy.dp import exact

log = logging.getLogger(__name__)

DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class Charge:
    granted: bool
    stream: str
    day: int  # days since the epoch, UTC
    epsilon: Fraction
    spent: Fraction  # after this charge (or as it stood, when refused)
    budget: Fraction
    reason: str = "budget"  # why refused: "budget" (spent), "ledger" (store and log disagree), "clock" (went back)

    @property
    def remaining(self) -> Fraction:
        return self.budget - self.spent


class Accountant:
    """`charge(stream, epsilon, now)` -> Charge. `budgets` maps a stream to its daily epsilon."""

    def __init__(self, path: str | Path, budgets: Mapping[str, float | Fraction], ledger: Any = None) -> None:
        self.budgets = {k: exact(v) for k, v in budgets.items()}
        self.ledger = ledger  # the audit log (firmware.privacy.audit.AuditLog) spends are chained into
        for k, v in self.budgets.items():
            if v <= 0:
                raise BudgetError(f"daily budget of stream {k!r} must be positive, not {v}")
        self._lock = threading.Lock()
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("CREATE TABLE IF NOT EXISTS spent (stream TEXT NOT NULL, day INTEGER NOT NULL, "
                             "epsilon TEXT NOT NULL, releases INTEGER NOT NULL, PRIMARY KEY (stream, day))")
        except sqlite3.Error as e:
            raise BudgetError(f"privacy budget store {path}: {e}") from e
        self._logged: dict[tuple[str, int], Fraction] = {}
        self._last_day = -1
        self._distrust = bool(getattr(ledger, "tamper_found", ()))  # the log was cut or rolled back
        self._distrusted_day: int | None = None
        if ledger is not None:
            self._logged, self._last_day = spends_in_log(ledger.path)
            self._last_day = max(self._last_day, self._store_last_day())
            with self._lock:
                self._reconcile(self._rows(), None)

    def close(self) -> None:
        self._db.close()

    def spent(self, stream: str, now: float) -> Fraction:
        row = self._db.execute("SELECT epsilon FROM spent WHERE stream=? AND day=?",
                               (stream, int(now // DAY_S))).fetchone()
        return Fraction(row[0]) if row else Fraction(0)

    def charge(self, stream: str, epsilon: float | Fraction, now: float) -> Charge:
        return self.charge_many({stream: epsilon}, now)[stream]

    def charge_many(self, spend: dict[str, float | Fraction], now: float) -> dict[str, Charge]:
        """Charge several streams in one durable transaction (one fsync); each is granted or refused on its
        own budget. With a ledger log: all are refused while the store and the log disagree, or when `now`
        falls on a day before the latest day ever charged."""
        day = int(now // DAY_S)
        wanted = {}
        for stream, epsilon in spend.items():
            eps = exact(epsilon)
            if eps <= 0:
                raise BudgetError(f"a release must spend a positive epsilon, not {eps}")
            if stream not in self.budgets:
                raise BudgetError(f"no daily budget configured for stream {stream!r}")
            wanted[stream] = eps
        if self.ledger is not None:
            return self._charge_chained(wanted, day, now)
        return self._charge(wanted, day)

    def _charge(self, wanted: dict[str, Fraction], day: int,
                chain: Any = None) -> dict[str, Charge]:
        out = {}
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for stream, eps in wanted.items():
                    budget = self.budgets[stream]
                    row = self._db.execute("SELECT epsilon, releases FROM spent WHERE stream=? AND day=?",
                                           (stream, day)).fetchone()
                    spent, releases = (Fraction(row[0]), row[1]) if row else (Fraction(0), 0)
                    if spent + eps > budget:
                        out[stream] = Charge(False, stream, day, eps, spent, budget)
                        continue
                    self._db.execute("INSERT OR REPLACE INTO spent VALUES (?, ?, ?, ?)",
                                     (stream, day, str(spent + eps), releases + 1))
                    out[stream] = Charge(True, stream, day, eps, spent + eps, budget)
                if chain is not None:  # into the log first: a crash before COMMIT leaves the store behind
                    chain(out)
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise BudgetError(f"privacy budget store: {e}") from e
            except AuditError:  # the log could not take the spend (a full disk): nothing charged, nothing released
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return out

    # -- the ledger log ------------------------------------------------------------------------------------

    def _rows(self) -> dict[tuple[str, int], tuple[Fraction, int]]:
        return {(st, d): (Fraction(e), r) for st, d, e, r in
                self._db.execute("SELECT stream, day, epsilon, releases FROM spent")}

    def _store_last_day(self) -> int:
        row = self._db.execute("SELECT MAX(day) FROM spent").fetchone()
        return int(row[0]) if row and row[0] is not None else -1

    def _reconcile(self, rows: dict[tuple[str, int], tuple[Fraction, int]], now: float | None) -> bool:
        """Records and repairs a store behind the log; True when they agreed."""
        behind = {k: v for k, v in self._logged.items() if rows.get(k, (Fraction(0), 0))[0] < v}
        if not behind:
            return True
        t = now if now is not None else float(max(d for _, d in behind) * DAY_S)
        problems = [f"{st} day {d}: store {rows.get((st, d), (Fraction(0), 0))[0]}, log {v}"
                    for (st, d), v in sorted(behind.items())]
        log.error("privacy budget store behind the audit log (deleted, edited or a crash): %s", "; ".join(problems))
        self.ledger.append("budget_store_behind_log", t, problems=problems)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for (st, d), v in behind.items():
                self._db.execute("INSERT OR REPLACE INTO spent VALUES (?, ?, ?, ?)",
                                 (st, d, str(v), rows.get((st, d), (Fraction(0), 0))[1]))
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise BudgetError(f"privacy budget store: {e}") from e
        return False

    def _charge_chained(self, wanted: dict[str, Fraction], day: int, now: float) -> dict[str, Charge]:
        def refused(reason: str) -> dict[str, Charge]:
            return {s: Charge(False, s, day, e, self._logged.get((s, day), Fraction(0)), self.budgets[s], reason)
                    for s, e in wanted.items()}

        with self._lock:
            if self._distrust and self._distrusted_day in (None, day):
                if self._distrusted_day is None:  # spends of this day may have been cut from the log: none more
                    self._distrusted_day = day
                    log.error("the audit log was found cut or rolled back: nothing released on day %d", day)
                    self.ledger.append("budget_day_withheld", now, day=day, reason="audit log tampered")
                return refused("ledger")
            if day < self._last_day:
                log.error("wall clock on day %d, before day %d already charged: nothing released", day,
                          self._last_day)
                self.ledger.append("budget_clock_back", now, day=day, last_day=self._last_day)
                return refused("clock")
            if not self._reconcile(self._rows(), now):
                return refused("ledger")

        def chain(out: dict[str, Charge]) -> None:
            for c in out.values():
                if c.granted:
                    self.ledger.append("epsilon_spent", now, stream=c.stream, day=c.day, epsilon=str(c.epsilon),
                                       spent=str(c.spent))
                    self._logged[(c.stream, c.day)] = c.spent
            self._last_day = max(self._last_day, day)
        return self._charge(wanted, day, chain)

    def status(self, now: float | None = None) -> dict[str, dict[str, str]]:
        """Per stream: today's spent and remaining epsilon, as exact fractions in text."""
        now = time.time() if now is None else now
        out = {}
        for stream, budget in self.budgets.items():
            spent = self.spent(stream, now)
            out[stream] = {"spent": str(spent), "budget": str(budget), "remaining": str(budget - spent)}
        return out


_SPENT_MARKER = b'"event":"epsilon_spent"'


def spends_in_log(path: str | Path) -> tuple[dict[tuple[str, int], Fraction], int]:
    """The day totals the audit log's `epsilon_spent` entries record (the highest per stream and day), and the
    latest day charged (-1: none). Entries are found by their marker, so a long log is not parsed line by line."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return {}, -1
    except OSError as e:
        raise BudgetError(f"cannot read the audit log {path}: {e.strerror}") from e
    out: dict[tuple[str, int], Fraction] = {}
    last = -1
    pos = data.find(_SPENT_MARKER)
    while pos >= 0:
        start = data.rfind(b"\n", 0, pos) + 1
        stop = data.find(b"\n", pos)
        try:
            f = json.loads(data[start:stop if stop >= 0 else len(data)])["fields"]
            key, spent = (str(f["stream"]), int(f["day"])), Fraction(f["spent"])
        except (ValueError, KeyError, TypeError):
            pos = data.find(_SPENT_MARKER, pos + 1)
            continue  # a damaged line is the audit log's verify() to report
        out[key] = max(out.get(key, Fraction(0)), spent)
        last = max(last, key[1])
        pos = data.find(_SPENT_MARKER, pos + 1)
    return out, last

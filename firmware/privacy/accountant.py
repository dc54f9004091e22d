"""The privacy budget accountant: epsilon spent per stream per UTC day, kept in SQLite (WAL, synchronous FULL)
so that a restart or a power cut never refreshes a budget. Spending is all or nothing: a release that would
pass the day's budget is refused before any noise is drawn, and the stream releases nothing more that day.

Composition: sequential (basic) composition of pure epsilon-DP releases within a stream and day; each
release is itself one mechanism over a vector of counts whose L1 sensitivity the caller states. Amounts are
exact fractions (stored as "numerator/denominator"), so no rounding ever creeps into the budget.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from firmware.errors import BudgetError
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

    @property
    def remaining(self) -> Fraction:
        return self.budget - self.spent


class Accountant:
    """`charge(stream, epsilon, now)` -> Charge. `budgets` maps a stream to its daily epsilon."""

    def __init__(self, path: str | Path, budgets: Mapping[str, float | Fraction]) -> None:
        self.budgets = {k: exact(v) for k, v in budgets.items()}
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
        own budget."""
        day = int(now // DAY_S)
        wanted = {}
        for stream, epsilon in spend.items():
            eps = exact(epsilon)
            if eps <= 0:
                raise BudgetError(f"a release must spend a positive epsilon, not {eps}")
            if stream not in self.budgets:
                raise BudgetError(f"no daily budget configured for stream {stream!r}")
            wanted[stream] = eps
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
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise BudgetError(f"privacy budget store: {e}") from e
        return out

    def status(self, now: float | None = None) -> dict[str, dict[str, str]]:
        """Per stream: today's spent and remaining epsilon, as exact fractions in text."""
        now = time.time() if now is None else now
        out = {}
        for stream, budget in self.budgets.items():
            spent = self.spent(stream, now)
            out[stream] = {"spent": str(spent), "budget": str(budget), "remaining": str(budget - spent)}
        return out

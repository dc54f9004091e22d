"""The cloud's own watch over each device's privacy promises, from the batches it accepts.

- Audit log: every batch carries the device's signed audit head; the watch keeps the highest counter seen per
  device and flags a device whose head counter goes backwards (its log and head rolled back or deleted), or
  that signs the counter it holds over another log (`audit_forked`: rolled back and written up to it again).
- Epsilon ledger: the cloud sees every release, so it keeps its own per-device ledger, per stream (metric) and
  UTC day, of the epsilon the releases spent (one charge per window, as the device's accountant makes it),
  and flags a window released twice (epsilon spent twice: a device whose budget store was rewound) and a day
  whose releases pass the budget (`daily_budget`, or epsilon times the windows in a day).

Kept in the cloud database (tables `watch_*`, migration 0004), so every worker behind one database sees the same
heads and ledger and a restart forgets nothing. The cloud runs `check()` inside the transaction that stores the
batch, so a batch is never stored without being watched; on PostgreSQL a per-device advisory lock orders two
workers watching batches of one device at once. Flags are kept for good.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from cloud.db import Db

log = logging.getLogger(__name__)

DAY_S = 86_400
_LOCK_SPACE = 0x7761  # "wa": the advisory-lock class of the watch's per-device locks
_Charges = dict[tuple[str, int], tuple[int, Fraction]]  # (metric, window start) -> (span, epsilon) to charge


class PrivacyWatch:
    """`observe(device, batch, now)` after a new batch is stored (or `check()` inside its transaction); returns
    the flags it raised (also kept). `db` is the cloud's database, or a SQLite path / postgresql:// URL to open.
    A stream's daily budget: `daily_budget[stream]`, else `every_stream` (the fleet's [privacy] daily_epsilon),
    else (0) epsilon times the windows in a day."""

    def __init__(self, db: Db | str | Path, daily_budget: Mapping[str, float] | None = None,
                 every_stream: float = 0.0) -> None:
        self._own = not isinstance(db, Db)
        self.db = db if isinstance(db, Db) else Db(db)
        self.daily_budget = {k: Fraction(str(v)) for k, v in (daily_budget or {}).items()}
        self.every_stream = Fraction(str(every_stream))

    def close(self) -> None:
        if self._own:
            self.db.close()

    def observe(self, device: str, batch: Mapping[str, Any], now: float) -> list[dict[str, Any]]:
        flags = self.check(device, batch, now)
        report(flags)
        return flags

    def check(self, device: str, batch: Mapping[str, Any], now: float,
              device_locked: bool = False) -> list[dict[str, Any]]:
        """Watch one batch in one transaction (joining the caller's); returns the flags raised, not logged.
        `device_locked`: the caller's transaction already holds a lock that orders every transaction watching
        this device (`Store.store_batch` does: its upsert of the device's row holds that row until commit), so
        the watch's own per-device advisory lock would be one more statement for nothing."""
        head = batch.get("audit_head")
        aggregates = [r for r in batch.get("records", ()) if r.get("schema") == "umbra.aggregate/1"
                      and Fraction(str(r["epsilon"])) > 0]
        if not isinstance(head, Mapping) and not aggregates:
            return []
        raised: list[tuple[str, str]] = []
        with self.db.tx() as db:
            if db.postgres and not device_locked:
                db.run("SELECT pg_advisory_xact_lock(?, hashtext(?))", (_LOCK_SPACE, device))
            # one round trip on PostgreSQL's pipeline: the head's upsert, the releases' inserts, and each window's
            # claim and day's row as they are when every release is new (the usual case; when one was held
            # already, the claims are rolled back to the savepoint and asked for again). SQLite runs each
            # statement at once: the claims follow the releases' answer, as before.
            kept = self._queue_head(device, head, now) if isinstance(head, Mapping) else None
            rows = [(device, str(r["metric"]), str(r["zone"]), int(r["window_start"]), int(r["window_s"]),
                     str(Fraction(str(r["epsilon"])))) for r in aggregates]
            inserted = self._queue_releases(rows)
            every = {(m, z, st) for _, m, z, st, _, _ in rows}
            ahead = db.postgres and bool(aggregates)
            if ahead:
                db.run("SAVEPOINT watch_charges")
                charging = self._queue_charges(device, rows, every)
            if isinstance(head, Mapping):
                raised += self._head(device, head, kept)
            if aggregates:
                new = {(str(m), str(z), int(st)) for cur in inserted for m, z, st in cur.fetchall()}
                if not ahead or new != every:
                    if ahead:
                        db.run("ROLLBACK TO SAVEPOINT watch_charges")
                    charging = self._queue_charges(device, rows, new)
                raised += self._charge_all(device, *charging)
            for kind, detail in raised:
                db.run("INSERT INTO watch_flags VALUES (?, ?, ?, ?)", (device, now, kind, detail))
        return [{"device_id": device, "kind": k, "detail": d} for k, d in raised]

    def _queue_head(self, device: str, head: Mapping[str, Any], now: float) -> Any:
        """Queue the head's upsert (a cursor: a row if the cloud now holds this head)."""
        counter, digest = int(head.get("counter", head.get("seq", 0))), str(head.get("hash", ""))
        return self.db.execute(
            "INSERT INTO watch_heads VALUES (?, ?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
            "counter = excluded.counter, seq = excluded.seq, hash = excluded.hash, t = excluded.t "
            "WHERE excluded.counter > watch_heads.counter "
            "OR (excluded.counter = watch_heads.counter AND excluded.hash = watch_heads.hash) RETURNING counter",
            (device, counter, int(head.get("seq", 0)), digest, now))

    def _head(self, device: str, head: Mapping[str, Any], kept_cur: Any) -> list[tuple[str, str]]:
        counter, digest = int(head.get("counter", head.get("seq", 0))), str(head.get("hash", ""))
        kept = kept_cur.fetchall()
        if kept:
            return []
        row = self.db.one("SELECT counter, seq, hash FROM watch_heads WHERE device_id=?", (device,))
        assert row is not None  # the upsert found it and kept what it held
        if int(row[0]) == counter:  # the same signed counter over another log: one of the two was rolled back
            return [("audit_forked", f"audit head counter {counter} (seq {head.get('seq')}) signs hash "
                                     f"{digest[:16]}, the cloud holds {str(row[2])[:16]} (seq {row[1]}) for it: "
                                     "the device's audit log was rolled back and written again")]
        return [("audit_rewound", f"audit head counter {counter} (seq {head.get('seq')}) after {row[0]} "
                                  f"(seq {row[1]}): the device's audit log went backwards")]

    def _queue_charges(self, device: str, rows: list[tuple[str, str, str, int, int, str]],
                       new: set[tuple[str, str, int]]) -> tuple[list[tuple[str, str]], _Charges, dict, dict]:
        """From `rows` (as `_queue_releases` took them) and `new` ((metric, zone, start) of those inserted): the
        released_twice flags, each window's charge, and the queued claims of the windows and reads of the days."""
        new = set(new)
        raised: list[tuple[str, str]] = []
        charges: _Charges = {}
        for row in rows:
            _, metric, zone, start, span, eps = row
            if (metric, zone, start) not in new:
                raised.append(("released_twice", f"{metric} of zone {zone} for the window at {start} released "
                                                 "again: epsilon spent twice (budget store rewound?)"))
                continue
            new.discard((metric, zone, start))  # the same release twice in one batch: the second is a repeat
            had = charges.get((metric, start))
            if had is None or had[1] < Fraction(eps):
                charges[(metric, start)] = (span, Fraction(eps))
        # under the device's lock nothing else writes these meanwhile
        claims = {k: self._claim_window(device, k[0], k[1], span, eps) for k, (span, eps) in charges.items()}
        day_rows = {k: self._day_row(device, *k) for k in sorted({(m, st // DAY_S) for m, st in charges})}
        return raised, charges, claims, day_rows

    def _charge_all(self, device: str, raised: list[tuple[str, str]], charges: _Charges,
                    claims: dict[tuple[str, int], Any], day_rows: dict[tuple[str, int], Any]) -> list[tuple[str, str]]:
        """Charge the windows and days `_queue_charges` asked for; returns its flags and the budget's."""
        raised = list(raised)
        days: dict[tuple[str, int], tuple[Fraction, Fraction]] = {}  # (metric, day) -> (added, implied budget)
        for (metric, start), (span, charge) in charges.items():
            added = self._charge(device, metric, start, charge, claims[(metric, start)])
            key = (metric, start // DAY_S)
            got = days.get(key, (Fraction(0), Fraction(0)))
            days[key] = (got[0] + added, max(got[1], charge * (DAY_S // max(1, span))))
        for (metric, day), (added, implied) in sorted(days.items()):
            raised += self._day(device, metric, day, added, implied, day_rows[(metric, day)].fetchone())
        return raised

    def _queue_releases(self, rows: list[tuple[str, str, str, int, int, str]]) -> list[Any]:
        """Queue the inserts of the releases not held yet (one statement per 200); returns the cursors whose rows
        are (metric, zone, start) of those inserted (read them before the transaction ends)."""
        out = []
        for i in range(0, len(rows), 200):
            part = rows[i:i + 200]
            sql = ("INSERT INTO watch_releases VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(part))
                   + " ON CONFLICT DO NOTHING RETURNING metric, zone, window_start")
            out.append(self.db.execute(sql, [x for r in part for x in r]))
        return out

    def _claim_window(self, device: str, metric: str, start: int, span: int, eps: Fraction) -> Any:
        """Queue the window's first charge (a cursor: a row if the window was not charged yet)."""
        return self.db.execute("INSERT INTO watch_windows VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1",
                               (device, metric, start, span, str(eps)))

    def _day_row(self, device: str, metric: str, day: int) -> Any:
        return self.db.execute("SELECT spent, implied FROM watch_days WHERE device_id=? AND metric=? AND day=?",
                               (device, metric, day))

    def _charge(self, device: str, metric: str, start: int, eps: Fraction, claim: Any) -> Fraction:
        """Charge the window (one charge per window and stream: the largest epsilon released in it); returns the
        epsilon this added to the window's charge. `claim`: the cursor of `_claim_window`."""
        if claim.fetchall():
            return eps  # the window's first release (the usual case: one statement)
        row = self.db.one("SELECT epsilon FROM watch_windows WHERE device_id=? AND metric=? AND window_start=?",
                          (device, metric, start))
        old = Fraction(row[0]) if row else Fraction(0)
        if eps <= old:
            return Fraction(0)
        self.db.run("UPDATE watch_windows SET epsilon = ? WHERE device_id=? AND metric=? AND window_start=?",
                        (str(eps), device, metric, start))
        return eps - old

    def _day(self, device: str, metric: str, day: int, added: Fraction, implied: Fraction,
             row: tuple | None) -> list[tuple[str, str]]:
        spent = (Fraction(row[0]) if row else Fraction(0)) + added
        implied = max(implied, Fraction(row[1]) if row else Fraction(0))
        if row is None or added or implied != Fraction(row[1]):
            self.db.run("INSERT INTO watch_days VALUES (?, ?, ?, ?, ?) ON CONFLICT(device_id, metric, day) "
                            "DO UPDATE SET spent = excluded.spent, implied = excluded.implied",
                            (device, metric, day, str(spent), str(implied)))
        budget = self.daily_budget.get(metric) or self.every_stream or implied
        if spent <= budget:
            return []
        return [("budget_passed", f"{metric} on day {day}: releases spent epsilon {float(spent):.4g}, "
                                  f"past the budget {float(budget):.4g}")]

    def ledger(self, device: str) -> dict[str, dict[int, Fraction]]:
        """Epsilon spent per metric and UTC day, as the cloud saw it."""
        out: dict[str, dict[int, Fraction]] = {}
        for metric, day, spent in self.db.all("SELECT metric, day, spent FROM watch_days WHERE device_id=? "
                                              "ORDER BY metric, day", (device,)):
            out.setdefault(metric, {})[int(day)] = Fraction(spent)
        return out

    def last_counter(self, device: str) -> int | None:
        row = self.db.one("SELECT counter FROM watch_heads WHERE device_id=?", (device,))
        return int(row[0]) if row else None

    def flags(self, device: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT device_id, t, kind, detail FROM watch_flags" + (" WHERE device_id=?" if device else "")
        return [{"device_id": d, "t": t, "kind": k, "detail": x}
                for d, t, k, x in self.db.all(q + " ORDER BY t", (device,) if device else ())]

    def to_json(self, device: str) -> str:
        return json.dumps({"last_counter": self.last_counter(device), "flags": self.flags(device)})


def report(flags: list[dict[str, Any]]) -> None:
    for f in flags:
        log.error("device %s: %s: %s", f["device_id"], f["kind"], f["detail"])

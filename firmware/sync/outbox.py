"""The durable outbox: records wait here, in SQLite, until the cloud acknowledges the batch that carried them.

- WAL journal with `synchronous=FULL`: a commit returns only after the WAL is fsynced, so a record whose
  `enqueue` returned survives a SIGKILL at any instant and a power cut (NORMAL would be kill-safe but could
  lose the last commits on power loss; at 2 commits a second the fsync costs nothing that matters).
- `enqueue(records)` writes one transaction (the loop calls `sink(tick)` once per tick).
- `take_batch()` assigns the oldest unbatched records (capped by count and bytes) to a new batch with a fresh
  id and the next value of a monotonic batch sequence, in one transaction; until that batch is acknowledged,
  `take_batch()` returns the same batch again (same id, same records), so a resend after a lost
  acknowledgement is byte-identical and the cloud's dedup drops it.
- `ack(batch_id)` deletes the batch and its records.
- Bounded: above `max_records` or `max_bytes`, the oldest records of the most expendable kind are dropped
  first (tracks, then samples, flow groups, status; released aggregates and audit entries last), never records
  already in an unacknowledged batch. Drops are counted per kind, persisted, and reported by `stats()`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.config.sync import OutboxConfig
from firmware.errors import FirmwareError, OutboxError
from firmware.privacy.compliance import HeldItem
from firmware.schemas import validate as schema_validate
from firmware.sensing.loop import RecordSink
from firmware.sensing.records import QuantizedTrack

log = logging.getLogger(__name__)

# dropped first ... dropped last when the outbox is full
DROP_ORDER = ("track", "sample", "flowgroups", "demographics", "status", "alert", "ota", "aggregate", "audit")
_PRIORITY = {k: i for i, k in enumerate(DROP_ORDER)}
PENDING_MAX = 5000  # records kept in memory while the disk is full (see Outbox._flush_pending)


@dataclass(frozen=True, slots=True)
class Batch:
    """Records taken for one upload. `bodies` are the records' compact JSON texts, `seqs` their outbox
    sequence numbers (strictly increasing; the cloud keys records by (outbox id, seq))."""

    batch_id: str
    seq: int
    outbox_id: str
    seqs: tuple[int, ...]
    bodies: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.bodies)

    def payload(self, device_id: str, audit_head: Mapping[str, Any] | None = None) -> bytes:
        """The batch's JSON document (umbra.batch/1), built without re-parsing the records; `audit_head`: the
        audit log's signed head as it stands (its counter lets the cloud see a log that goes backwards)."""
        doc: dict[str, Any] = {"schema": "umbra.batch/1", "device_id": device_id, "outbox_id": self.outbox_id,
                               "batch_id": self.batch_id, "seq": self.seq, "seqs": list(self.seqs)}
        if audit_head is not None:
            doc["audit_head"] = dict(audit_head)
        head = json.dumps(doc, separators=(",", ":"))
        return (head[:-1] + ',"records":[' + ",".join(self.bodies) + "]}").encode("utf-8")


@dataclass(frozen=True, slots=True)
class OutboxStats:
    records: int
    bytes: int
    pending_batch: str | None
    dropped: Mapping[str, int]
    enqueued_total: int
    acked_total: int
    pending: int = 0  # records waiting in memory for room on the disk
    write_failures: int = 0


def _time_and_zone(kind: str, record: Mapping[str, Any]) -> tuple[float | None, str | None]:
    """When a record's data was observed (None for kinds without one) and its zone, if it has one."""
    t = record.get({"sample": "taken_at", "aggregate": "window_start", "flowgroups": "window_start",
                    "demographics": "window_start"}.get(kind, "t"))
    zone = record.get("zone")
    return (float(t) if isinstance(t, int | float) else None), (zone if isinstance(zone, str) else None)


def kind_of(record: Mapping[str, Any]) -> str:
    """'umbra.track/1' -> 'track'."""
    schema = record.get("schema")
    if not isinstance(schema, str) or not schema.startswith("umbra.") or "/" not in schema:
        raise OutboxError(f"record has no umbra schema id (got {schema!r}); cannot store it")
    kind = schema[6:schema.index("/")]
    if kind not in _PRIORITY:
        raise OutboxError(f"record kind {kind!r} has no drop priority; known: {', '.join(DROP_ORDER)}")
    return kind


_DDL = """
CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
  prio INTEGER NOT NULL, size INTEGER NOT NULL, body TEXT NOT NULL, batch TEXT);
CREATE INDEX IF NOT EXISTS records_batch ON records(batch, seq);
CREATE INDEX IF NOT EXISTS records_drop ON records(prio, seq) WHERE batch IS NULL;
CREATE TABLE IF NOT EXISTS batches (batch_id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v);
CREATE TABLE IF NOT EXISTS dropped (kind TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""
_SHAPE = ("SELECT seq, kind, prio, size, body, batch FROM records LIMIT 0", "SELECT batch_id, seq FROM batches LIMIT 0",
          "SELECT k, v FROM meta LIMIT 0", "SELECT kind, n FROM dropped LIMIT 0")


class Outbox:
    """Thread-safe (one connection, one lock): the loop enqueues while the uploader takes and acks."""

    def __init__(self, config: OutboxConfig, validate: Callable[[Any], None] | None = None) -> None:
        """`validate(record)` raises on a bad record; default `firmware.schemas.validate` when the config's
        `validate_records` is on. Raises OutboxError if the database cannot be opened."""
        config.validate()
        self.config = config
        if validate is None and config.validate_records:

            validate = schema_validate
        self._validate = validate
        self._lock = threading.Lock()
        self.sink = RecordSink(self.enqueue_tracks)  # the SensorLoop's sink: each tick's and the last bucket's
        self.recreated = 0  # times the database file was found deleted under us and written back (see _ensure_file)
        self.write_failures = 0  # enqueues the disk had no room for (SQLITE_FULL): their records wait in memory
        self._pending: list[tuple[str, int, int, str]] = []  # (kind, prio, size, body) not yet written, in order
        self._pending_dropped: dict[str, int] = {}
        self._full = False
        try:
            self._db = self._connect()
            self._db.executescript(_DDL)
            with self._tx():
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('outbox_id', ?)", (secrets.token_hex(8),))
                for k in ("batch_seq", "enqueued", "acked"):
                    self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, 0)", (k,))
            for probe in _SHAPE:  # a table of ours with other columns (IF NOT EXISTS kept it) fails here, not mid-run
                self._db.execute(probe)
            self.outbox_id = self._meta("outbox_id")
            n, b = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records").fetchone()
        except sqlite3.Error as e:
            raise OutboxError(f"cannot open the outbox {config.path}: {e}") from e
        self._count, self._bytes = int(n), int(b)

    # --- plumbing -------------------------------------------------------------------------------------------

    _FILES = ("", "-wal", "-shm")  # the database, its write-ahead log and its shared-memory index

    def _connect(self) -> sqlite3.Connection:
        Path(self.config.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.config.path, isolation_level=None, check_same_thread=False, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.config.synchronous}")
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # opens the WAL and its index now
        self._idents = self._stat_files()
        return db

    def _stat_files(self) -> list[tuple[int, int] | None]:
        out: list[tuple[int, int] | None] = []
        for suffix in self._FILES:
            try:
                st = os.stat(self.config.path + suffix)
                out.append((st.st_dev, st.st_ino))
            except FileNotFoundError:
                out.append(None)
        return out

    def _ensure_file(self) -> None:
        """Are our database, its WAL and its index still the files at the path? One deleted or replaced while
        we run (an operator, a cleaner, another file renamed over it), SQLite would go on writing to the
        unlinked file (a deleted WAL takes every later commit with it) and every record would be lost at the
        next start. If so, everything the open connection still sees is copied to a new file at the path
        (sqlite's backup), the old connection is closed, stale WAL and index files at the path are removed (a
        new connection would read another file's log), the connection moves to the new file, and it is
        counted (`recreated`, in every status record after it) and logged. Call with the lock held."""
        try:
            now = self._stat_files()
        except OSError as e:
            raise OutboxError(f"cannot check the outbox file {self.config.path}: {e.strerror}") from e
        if all(a is None or a == b for a, b in zip(self._idents, now, strict=True)):
            self._idents = [a or b for a, b in zip(self._idents, now, strict=True)]  # a WAL made since: ours
            return
        part = Path(self.config.path + ".restore")
        try:
            part.parent.mkdir(parents=True, exist_ok=True)
            part.unlink(missing_ok=True)
            target = sqlite3.connect(str(part))
            try:
                self._db.backup(target)
            finally:
                target.close()
            self._db.close()
            for suffix in self._FILES[1:]:
                Path(self.config.path + suffix).unlink(missing_ok=True)
            os.replace(part, self.config.path)
            self._db = self._connect()
        except (sqlite3.Error, OSError) as e:
            raise OutboxError(f"the outbox file {self.config.path} vanished and cannot be written back: {e}") from e
        self.recreated += 1
        log.error("outbox file %s (or its WAL) was deleted or replaced while running: written back with its %d "
                  "records (%d times)", self.config.path, self._count, self.recreated)

    def _tx(self) -> Any:
        db = self._db

        class _Tx:
            def __enter__(self) -> None:
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
                if et is None:
                    try:
                        db.execute("COMMIT")
                    except sqlite3.Error:
                        if db.in_transaction:
                            db.execute("ROLLBACK")
                        raise
                elif db.in_transaction:  # SQLite has already rolled back after some errors (SQLITE_FULL)
                    db.execute("ROLLBACK")

        return _Tx()

    def _meta(self, k: str) -> Any:
        return self._db.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            try:
                self._flush_pending()  # a last try: what still finds no room is lost with the process (logged)
            except OutboxError as e:
                log.error("%s", e)
            if self._pending:
                log.error("outbox closed with %d records it had no room for: lost", len(self._pending))
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- device side: enqueue -------------------------------------------------------------------------------

    def enqueue(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Store records in one transaction; returns how many. Raises OutboxError (nothing stored)."""
        rows = []
        for r in records:
            kind = kind_of(r)
            if self._validate is not None:
                try:
                    self._validate(r)
                except FirmwareError as e:
                    raise OutboxError(f"record refused, nothing of this transaction stored: {e}") from e
            body = json.dumps(r, separators=(",", ":"), ensure_ascii=False)
            rows.append((kind, _PRIORITY[kind], len(body), body))
        if not rows:
            return 0
        with self._lock:
            self._ensure_file()
            self._pending.extend(rows)
            self._flush_pending()
        return len(rows)

    def _flush_pending(self) -> None:
        """Write the records waiting in memory, in one transaction. A full disk (SQLITE_FULL: the partition,
        or the database's page limit) keeps them waiting, counted (`write_failures`, in the status record),
        bounded by `PENDING_MAX` (the most expendable dropped first, counted as drops) and written at the next
        enqueue or take once there is room again: a full disk loses nothing already handed over while the
        sensor runs (a power cut then loses what waits in memory). Other SQLite errors raise OutboxError with
        the records still waiting. Call with the lock held."""
        if not self._pending:
            return
        rows, size = self._pending, sum(r[2] for r in self._pending)
        try:
            with self._tx():
                self._db.executemany("INSERT INTO records (kind, prio, size, body) VALUES (?, ?, ?, ?)", rows)
                self._db.execute("UPDATE meta SET v = v + ? WHERE k = 'enqueued'", (len(rows),))
                for kind, n in self._pending_dropped.items():
                    self._db.execute("INSERT INTO dropped VALUES (?, ?) ON CONFLICT(kind) DO UPDATE SET n = n + ?",
                                     (kind, n, n))
                dropped = self._enforce_bounds(self._count + len(rows), self._bytes + size)
        except sqlite3.Error as e:
            if getattr(e, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
                raise OutboxError(f"outbox write failed ({len(rows)} records not stored yet): {e}") from e
            self.write_failures += 1
            self._full = True
            self._bound_pending()
            log.error("outbox full (%s): %d records wait in memory (%d times)", e, len(self._pending),
                      self.write_failures)
            return
        if self._full:
            self._full = False
            log.warning("outbox: room again, %d waiting records written", len(rows))
        self._pending, self._pending_dropped = [], {}
        self._count += len(rows) - dropped[0]
        self._bytes += size - dropped[1]

    def _bound_pending(self) -> None:
        over = len(self._pending) - PENDING_MAX
        if over <= 0:
            return
        order = sorted(range(len(self._pending)), key=lambda i: (self._pending[i][1], i))[:over]
        for i in order:
            kind = self._pending[i][0]
            self._pending_dropped[kind] = self._pending_dropped.get(kind, 0) + 1
        gone = set(order)
        self._pending = [r for i, r in enumerate(self._pending) if i not in gone]

    def enqueue_tracks(self, records: Iterable[QuantizedTrack]) -> int:
        """Released track records, one transaction (`sink` hands each tick's here)."""
        return self.enqueue([r.to_json() for r in records])

    def _enforce_bounds(self, count: int, nbytes: int) -> tuple[int, int]:
        over_n = count - self.config.max_records
        over_b = nbytes - self.config.max_bytes
        if over_n <= 0 and over_b <= 0:
            return 0, 0
        gone_n = gone_b = 0
        cur = self._db.execute("SELECT seq, kind, size FROM records WHERE batch IS NULL ORDER BY prio, seq")
        victims: list[tuple[int]] = []
        per_kind: dict[str, int] = {}
        for seq, kind, size in cur:
            if gone_n >= over_n and gone_b >= over_b:
                break
            victims.append((seq,))
            per_kind[kind] = per_kind.get(kind, 0) + 1
            gone_n += 1
            gone_b += size
        cur.close()
        self._db.executemany("DELETE FROM records WHERE seq = ?", victims)
        for kind, n in per_kind.items():
            self._db.execute("INSERT INTO dropped VALUES (?, ?) ON CONFLICT(kind) DO UPDATE SET n = n + ?",
                             (kind, n, n))
        log.warning("outbox full: dropped %s", per_kind)
        return gone_n, gone_b

    # --- uploader side --------------------------------------------------------------------------------------

    def take_batch(self) -> Batch | None:
        """The unacknowledged batch if there is one, else a new batch of the oldest records (or None)."""
        with self._lock:
            self._ensure_file()
            self._flush_pending()
            try:
                row = self._db.execute("SELECT batch_id, seq FROM batches ORDER BY seq LIMIT 1").fetchone()
                if row is None:
                    row = self._new_batch()
                    if row is None:
                        return None
                got = self._db.execute("SELECT seq, body FROM records WHERE batch = ? ORDER BY seq",
                                       (row[0],)).fetchall()
            except sqlite3.Error as e:
                raise OutboxError(f"outbox read failed: {e}") from e
        return Batch(row[0], int(row[1]), self.outbox_id, tuple(s for s, _ in got), tuple(b for _, b in got))

    def _new_batch(self) -> tuple[str, int] | None:
        cap_n, cap_b = self.config.batch_records, self.config.batch_bytes
        cur = self._db.execute("SELECT seq, size FROM records WHERE batch IS NULL ORDER BY seq LIMIT ?", (cap_n,))
        last, total = None, 0
        for seq, size in cur:
            if last is not None and total + size > cap_b:
                break
            last, total = seq, total + size
        cur.close()
        if last is None:
            return None
        batch_id = secrets.token_hex(16)
        with self._tx():
            self._db.execute("UPDATE meta SET v = v + 1 WHERE k = 'batch_seq'")
            seq = int(self._meta("batch_seq"))
            self._db.execute("INSERT INTO batches VALUES (?, ?)", (batch_id, seq))
            self._db.execute("UPDATE records SET batch = ? WHERE batch IS NULL AND seq <= ?", (batch_id, last))
        return batch_id, seq

    def ack(self, batch_id: str) -> int:
        """The cloud holds this batch: delete it and its records. Returns how many records went."""
        with self._lock:
            self._ensure_file()
            try:
                with self._tx():
                    n, b = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records WHERE batch = ?",
                                            (batch_id,)).fetchone()
                    self._db.execute("DELETE FROM records WHERE batch = ?", (batch_id,))
                    self._db.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))
                    self._db.execute("UPDATE meta SET v = v + ? WHERE k = 'acked'", (n,))
            except sqlite3.Error as e:
                raise OutboxError(f"outbox ack failed: {e}") from e
            self._count -= int(n)
            self._bytes -= int(b)
        return int(n)

    def purge_samples(self, before: float) -> int:
        """Deletes the sample images taken before `before` (epoch seconds) that are still waiting, not yet in
        a batch (the retention rule: a sample the cloud has not taken within its days is not kept). Returns
        how many went."""
        with self._lock:
            try:
                with self._tx():
                    rows = self._db.execute(
                        "SELECT seq, size, body FROM records WHERE kind = 'sample' AND batch IS NULL").fetchall()
                    old = [(seq, size) for seq, size, body in rows if float(json.loads(body)["taken_at"]) < before]
                    self._db.executemany("DELETE FROM records WHERE seq = ?", [(seq,) for seq, _ in old])
            except (sqlite3.Error, ValueError, KeyError) as e:
                raise OutboxError(f"outbox sample purge failed: {e}") from e
            self._count -= len(old)
            self._bytes -= sum(size for _, size in old)
        return len(old)

    def held(self, start: float, end: float) -> list[HeldItem]:
        """Every record waiting here (in a batch or not) with start <= its time < end, as compliance sees it
        (firmware.privacy.compliance.HeldItem: kind, time, zone, size)."""

        with self._lock:
            rows = self._db.execute("SELECT kind, size, body FROM records ORDER BY seq").fetchall()
        out = []
        for kind, size, body in rows:
            t, zone = _time_and_zone(kind, json.loads(body))
            if t is not None and start <= t < end:
                out.append(HeldItem(kind, t, zone, int(size)))
        return out

    def erase(self, start: float, end: float, kinds: Iterable[str]) -> int:
        """Deletes the waiting records of `kinds` with start <= time < end, in a batch or not (a batch in
        flight then resends without them). Returns how many."""
        kinds = tuple(kinds)
        with self._lock:
            try:
                with self._tx():
                    marks = ",".join("?" * len(kinds))
                    rows = self._db.execute(f"SELECT seq, kind, size, body FROM records WHERE kind IN ({marks})",
                                            kinds).fetchall()
                    gone = []
                    for seq, kind, size, body in rows:
                        t = _time_and_zone(kind, json.loads(body))[0]
                        if t is not None and start <= t < end:
                            gone.append((seq, size))
                    self._db.executemany("DELETE FROM records WHERE seq = ?", [(seq,) for seq, _ in gone])
            except sqlite3.Error as e:
                raise OutboxError(f"outbox erasure failed: {e}") from e
            self._count -= len(gone)
            self._bytes -= sum(size for _, size in gone)
        return len(gone)

    def stats(self) -> OutboxStats:
        with self._lock:
            dropped = dict(self._db.execute("SELECT kind, n FROM dropped").fetchall())
            for kind, n in self._pending_dropped.items():
                dropped[kind] = dropped.get(kind, 0) + n
            pending = self._db.execute("SELECT batch_id FROM batches ORDER BY seq LIMIT 1").fetchone()
            return OutboxStats(self._count + len(self._pending), self._bytes + sum(r[2] for r in self._pending),
                               pending[0] if pending else None, dropped, int(self._meta("enqueued")),
                               int(self._meta("acked")), len(self._pending), self.write_failures)

    def __len__(self) -> int:
        return self._count + len(self._pending)

"""The reference cloud's SQLite store: per-device signing keys, accepted batches, records, seen nonces.

Records are keyed by (device, outbox id, outbox seq), so even a batch re-cut with a new id (it cannot be:
the outbox resends the same batch) would not count a record twice; batches by (device, batch id)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from trust.keys import BatchKey

_DDL = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS keys (device_id TEXT NOT NULL, key_id TEXT NOT NULL, secret BLOB NOT NULL,
  not_before INTEGER NOT NULL, expires INTEGER NOT NULL, PRIMARY KEY (device_id, key_id));
CREATE TABLE IF NOT EXISTS batches (device_id TEXT NOT NULL, batch_id TEXT NOT NULL, outbox_id TEXT NOT NULL,
  seq INTEGER NOT NULL, n INTEGER NOT NULL, received REAL NOT NULL, PRIMARY KEY (device_id, batch_id));
CREATE TABLE IF NOT EXISTS records (device_id TEXT NOT NULL, outbox_id TEXT NOT NULL, seq INTEGER NOT NULL,
  schema TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (device_id, outbox_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, t INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS authorizations (device_id TEXT NOT NULL, token_id TEXT NOT NULL, token TEXT,
  revoked INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (device_id, token_id));
"""


class Store:
    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
        self._db.executescript(_DDL)
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses at most unacked work
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    # keys
    def add_key(self, device_id: str, key: BatchKey) -> None:
        with self._lock:
            self._db.execute("INSERT INTO keys VALUES (?, ?, ?, ?, ?)",
                             (device_id, key.key_id, key.secret, key.not_before, key.expires))

    def key(self, device_id: str, key_id: str) -> BatchKey | None:
        row = self._db.execute("SELECT key_id, secret, not_before, expires FROM keys WHERE device_id=? AND key_id=?",
                               (device_id, key_id)).fetchone()
        return BatchKey(row[0], bytes(row[1]), row[2], row[3]) if row else None

    def newest_key(self, device_id: str) -> BatchKey | None:
        row = self._db.execute("SELECT key_id, secret, not_before, expires FROM keys WHERE device_id=? "
                               "ORDER BY expires DESC LIMIT 1", (device_id,)).fetchone()
        return BatchKey(row[0], bytes(row[1]), row[2], row[3]) if row else None

    # customer sampling authorizations, relayed to the device as they are (the device verifies them)
    def put_authorization(self, device_id: str, token_id: str, token: str | None) -> None:
        """Store a token for a device (token None: revoke that id; a revoked id stays revoked)."""
        with self._lock:
            if token is None:
                self._db.execute("INSERT INTO authorizations VALUES (?, ?, NULL, 1) ON CONFLICT(device_id, "
                                 "token_id) DO UPDATE SET token = NULL, revoked = 1", (device_id, token_id))
            else:
                self._db.execute("INSERT INTO authorizations VALUES (?, ?, ?, 0) ON CONFLICT(device_id, token_id) "
                                 "DO UPDATE SET token = excluded.token WHERE revoked = 0", (device_id, token_id, token))

    def authorizations(self, device_id: str) -> tuple[list[str], list[str]]:
        """(tokens in force, revoked token ids) for a device."""
        rows = self._db.execute("SELECT token_id, token, revoked FROM authorizations WHERE device_id=? "
                                "ORDER BY token_id", (device_id,)).fetchall()
        return [r[1] for r in rows if not r[2]], [r[0] for r in rows if r[2]]

    # replay
    def seen_nonce(self, nonce: str, t: int, forget_before: int) -> bool:
        """Record `nonce`; True if it was already there (a replay). Forgets nonces older than the window."""
        with self._lock:
            self._db.execute("DELETE FROM nonces WHERE t < ?", (forget_before,))
            cur = self._db.execute("INSERT OR IGNORE INTO nonces VALUES (?, ?)", (nonce, t))
            return cur.rowcount == 0

    # batches
    def has_batch(self, device_id: str, batch_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM batches WHERE device_id=? AND batch_id=?",
                                (device_id, batch_id)).fetchone() is not None

    def store_batch(self, device_id: str, batch_id: str, outbox_id: str, seq: int, received: float,
                    rows: Sequence[tuple[int, str, str]]) -> tuple[bool, int]:
        """Store a batch and its records in one transaction. Returns (new batch?, records newly stored)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute("INSERT OR IGNORE INTO batches VALUES (?, ?, ?, ?, ?, ?)",
                                       (device_id, batch_id, outbox_id, seq, len(rows), received))
                if cur.rowcount == 0:
                    self._db.execute("ROLLBACK")
                    return False, 0
                before = self._db.total_changes
                self._db.executemany("INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?)",
                                     [(device_id, outbox_id, s, sc, b) for s, sc, b in rows])
                fresh = self._db.total_changes - before
                dup = len(rows) - fresh
                if dup:
                    self._db.execute("INSERT INTO counters VALUES ('duplicate_records', ?) "
                                     "ON CONFLICT(name) DO UPDATE SET n = n + ?", (dup, dup))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return True, fresh

    def count(self, what: str) -> int:
        if what == "duplicate_records":
            row = self._db.execute("SELECT n FROM counters WHERE name = 'duplicate_records'").fetchone()
            return int(row[0]) if row else 0
        if what not in ("records", "batches"):
            raise ValueError(what)
        return int(self._db.execute(f"SELECT COUNT(*) FROM {what}").fetchone()[0])

    def record_seqs(self, device_id: str, outbox_id: str | None = None) -> list[int]:
        q = "SELECT seq FROM records WHERE device_id=?" + (" AND outbox_id=?" if outbox_id else "") + " ORDER BY seq"
        return [r[0] for r in self._db.execute(q, (device_id, outbox_id) if outbox_id else (device_id,))]

    def bodies(self, device_id: str) -> list[str]:
        return [r[0] for r in self._db.execute(
            "SELECT body FROM records WHERE device_id=? ORDER BY outbox_id, seq", (device_id,))]

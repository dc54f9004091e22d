"""The reference cloud's store: per-device signing keys, accepted batches, records, seen nonces, and what ops
read (the fleet inventory, each device's update outcomes), over SQLite or PostgreSQL (`cloud.db`).

Exactly once holds across worker processes through the database alone: a batch is stored in one transaction
that first claims its (device, batch id) row, and records are keyed by (device, outbox id, outbox seq), so a
second worker storing the same batch finds the claim taken (it waits for the first to commit, then does
nothing) and a record can never be stored twice. Rows derived from records (the fleet view, update outcomes)
are written in the same transaction, only for records newly stored."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud.db import Db
from trust.keys import BatchKey


@dataclass(frozen=True, slots=True)
class Peer:
    """What the TLS handshake says of the device that sent a batch."""

    cert_serial: str | None = None
    cert_expires: int | None = None


class Replay(Exception):
    """The signed request's nonce was already received."""


_STATUS_SET = ("firmware", "slot", "profile", "status_t", "uptime_s", "fps", "overruns", "detector",
               "outbox_records", "last_error", "hardware_id")


class Store:
    def __init__(self, url: str | Path) -> None:
        self.db = Db(url)
        self._nonces = 0

    def close(self) -> None:
        self.db.close()

    # keys
    def add_key(self, device_id: str, key: BatchKey) -> None:
        self.db.execute("INSERT INTO keys VALUES (?, ?, ?, ?, ?)",
                        (device_id, key.key_id, key.secret, key.not_before, key.expires))

    def key(self, device_id: str, key_id: str) -> BatchKey | None:
        row = self.db.one("SELECT key_id, secret, not_before, expires FROM keys WHERE device_id=? AND key_id=?",
                          (device_id, key_id))
        return BatchKey(row[0], bytes(row[1]), row[2], row[3]) if row else None

    def newest_key(self, device_id: str) -> BatchKey | None:
        row = self.db.one("SELECT key_id, secret, not_before, expires FROM keys WHERE device_id=? "
                          "ORDER BY expires DESC LIMIT 1", (device_id,))
        return BatchKey(row[0], bytes(row[1]), row[2], row[3]) if row else None

    def key_and_newest(self, device_id: str, key_id: str) -> tuple[BatchKey | None, BatchKey | None]:
        """(`key(device_id, key_id)`, `newest_key(device_id)`) in one statement: a device's first batch to a
        worker needs both (the key that signed it, and the newest to say whether to send the next)."""
        rows = self.db.all("SELECT key_id, secret, not_before, expires FROM keys WHERE device_id=? AND (key_id=? "
                           "OR expires = (SELECT MAX(expires) FROM keys WHERE device_id=?)) ORDER BY expires DESC",
                           (device_id, key_id, device_id))
        keys = [BatchKey(r[0], bytes(r[1]), r[2], r[3]) for r in rows]
        return next((k for k in keys if k.key_id == key_id), None), (keys[0] if keys else None)

    # customer sampling authorizations, relayed to the device as they are (the device verifies them)
    def put_authorization(self, device_id: str, token_id: str, token: str | None) -> None:
        """Store a token for a device (token None: revoke that id; a revoked id stays revoked)."""
        if token is None:
            self.db.execute("INSERT INTO authorizations VALUES (?, ?, NULL, 1) ON CONFLICT(device_id, "
                            "token_id) DO UPDATE SET token = NULL, revoked = 1", (device_id, token_id))
        else:
            self.db.execute("INSERT INTO authorizations VALUES (?, ?, ?, 0) ON CONFLICT(device_id, token_id) "
                            "DO UPDATE SET token = excluded.token WHERE authorizations.revoked = 0",
                            (device_id, token_id, token))

    def authorizations(self, device_id: str) -> tuple[list[str], list[str]]:
        """(tokens in force, revoked token ids) for a device."""
        rows = self.db.all("SELECT token_id, token, revoked FROM authorizations WHERE device_id=? "
                           "ORDER BY token_id", (device_id,))
        return [r[1] for r in rows if not r[2]], [r[0] for r in rows if r[2]]

    # replay
    def seen_nonce(self, nonce: str, t: int, forget_before: int) -> bool:
        """Record `nonce`; True if it was already there (a replay). Nonces older than the window are forgotten
        every 256th call (one statement per request otherwise)."""
        with self.db.tx():
            return not self._claim_nonce(nonce, t, forget_before).fetchall()

    def _claim_nonce(self, nonce: str, t: int, forget_before: int) -> Any:
        """Queue the nonce's claim (a cursor: a row if it is new); see `seen_nonce`."""
        self._nonces += 1
        if self._nonces % 256 == 1:
            self.db.run("DELETE FROM nonces WHERE t < ?", (forget_before,))
        return self.db.execute("INSERT INTO nonces VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING 1", (nonce, t))

    # batches
    def has_batch(self, device_id: str, batch_id: str) -> bool:
        return self.db.one("SELECT 1 FROM batches WHERE device_id=? AND batch_id=?", (device_id, batch_id)) is not None

    def store_batch(self, device_id: str, batch_id: str, outbox_id: str, seq: int, received: float,
                    rows: Sequence[tuple[int, str, str]], peer: Peer | None = None,
                    fresh_out: list[tuple[int, str, str]] | None = None,
                    on_new: Callable[[], object] | None = None,
                    nonce: tuple[str, int, int] | None = None) -> tuple[bool, int]:
        """Store a batch and its records in one transaction. Returns (new batch?, records newly stored);
        appends the newly stored rows to `fresh_out` once committed. `on_new` runs inside the transaction when
        the batch is new (the privacy watch), so the batch and what it derives commit together or not at all;
        it runs after the transaction's upsert of the device's row, which holds that row's lock until commit, so
        two workers' transactions for one device run `on_new` one after the other (what the watch's
        `device_locked` relies on).
        `nonce` (nonce, its timestamp, forget nonces before): the signed request's nonce, claimed in the same
        transaction; a nonce already held raises `Replay` and nothing is stored.

        On PostgreSQL the statements are pipelined: the nonce, the device's last-seen and the batch's claim
        share one round trip, the records a second, and what derives from them goes with the commit (the
        privacy watch adds the round trips whose answers it reads)."""
        with self.db.pipeline() as db, db.tx():
            claimed = self._claim_nonce(*nonce) if nonce is not None else None
            self._seen(device_id, received, peer or Peer())
            cur = db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1",
                             (device_id, batch_id, outbox_id, seq, len(rows), received))
            if claimed is not None and not claimed.fetchall():
                raise Replay(nonce[0] if nonce else "")  # rolls the transaction back
            if not cur.fetchall():
                return False, 0
            queued = self._queue_records(device_id, outbox_id, rows)
            if on_new is not None:  # the watch first: its first read shares the records' round trip
                on_new()
            new_seqs = {int(r[0]) for cur in queued for r in cur.fetchall()}
            fresh = [r for r in rows if r[0] in new_seqs]
            dup = len(rows) - len(fresh)
            if dup:
                db.run("INSERT INTO counters VALUES ('duplicate_records', ?) "
                           "ON CONFLICT(name) DO UPDATE SET n = counters.n + ?", (dup, dup))
            for s, sc, b in fresh:
                self._derive(device_id, outbox_id, s, sc, b)
        if fresh_out is not None:
            fresh_out.extend(fresh)
        return True, len(fresh)

    def _queue_records(self, device_id: str, outbox_id: str, rows: Sequence[tuple[int, str, str]]) -> list[Any]:
        """Insert the records not already held (one statement per 200); returns the cursors whose rows are the
        seqs newly stored (read them before the transaction ends)."""
        out = []
        for i in range(0, len(rows), 200):
            part = rows[i:i + 200]
            sql = ("INSERT INTO records VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * len(part))
                   + " ON CONFLICT DO NOTHING RETURNING seq")
            out.append(self.db.execute(sql, [x for s, sc, b in part for x in (device_id, outbox_id, s, sc, b)]))
        return out

    def _seen(self, device_id: str, now: float, peer: Peer) -> None:
        self.db.run(
            "INSERT INTO devices (device_id, last_seen, cert_serial, cert_expires) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(device_id) DO UPDATE SET last_seen = CASE WHEN devices.last_seen IS NULL OR "
            "excluded.last_seen > devices.last_seen THEN excluded.last_seen ELSE devices.last_seen END, "
            "cert_serial = COALESCE(excluded.cert_serial, devices.cert_serial), "
            "cert_expires = COALESCE(excluded.cert_expires, devices.cert_expires)",
            (device_id, now, peer.cert_serial, peer.cert_expires))

    def _derive(self, device_id: str, outbox_id: str, seq: int, schema: str, body: str) -> None:
        if schema == "umbra.status/1":
            self._status(device_id, json.loads(body))
        elif schema in ("umbra.aggregate/1", "umbra.flowgroups/1"):
            r = json.loads(body)
            metric, vals = (r["metric"], r["values"]) if "metric" in r else ("flowgroups", r["groups"])
            self.db.run("INSERT INTO aggregates VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                            (device_id, outbox_id, seq, metric, r["zone"], r["window_start"], r["window_s"],
                             json.dumps(vals)))
        elif schema == "umbra.demographics/1":
            r = json.loads(body)
            self.db.run("INSERT INTO aggregates VALUES (?, ?, ?, 'demographics', ?, ?, ?, ?) "
                            "ON CONFLICT DO NOTHING",
                            (device_id, outbox_id, seq, r["zone"], r["window_start"], r["window_s"],
                             json.dumps(r["counts"])))
        elif schema == "umbra.alert/1":
            r = json.loads(body)
            self.db.run("INSERT INTO aggregates VALUES (?, ?, ?, 'alert', ?, ?, 0, ?) ON CONFLICT DO NOTHING",
                            (device_id, outbox_id, seq, r["zone"], r["t"],
                             json.dumps({"rule": r["rule"], "value": r["value"], "limit": r["limit"]})))
        elif schema == "umbra.ota/1":
            r = json.loads(body)
            self.db.run(
                "INSERT INTO ota_results VALUES (?, ?, ?, ?) ON CONFLICT(device_id, release) DO UPDATE SET "
                "result = excluded.result, t = excluded.t WHERE excluded.t > ota_results.t OR "
                "(excluded.t = ota_results.t AND ota_results.result = 'installed')",
                (device_id, r["release"], r["result"], r["t"]))

    def _status(self, device_id: str, r: dict[str, Any]) -> None:
        vals = {"firmware": r["firmware"], "slot": r.get("slot"), "profile": r["profile"], "status_t": r["t"],
                "uptime_s": r["uptime_s"], "fps": r.get("fps"), "overruns": r.get("overruns"),
                "detector": r.get("detector"), "outbox_records": r["outbox_records"],
                "last_error": r.get("last_error"), "hardware_id": r.get("hardware")}
        sets = ", ".join(f"{k} = ?" for k in _STATUS_SET)
        self.db.run(f"UPDATE devices SET {sets} WHERE device_id = ? AND (status_t IS NULL OR status_t <= ?)",
                        [vals[k] for k in _STATUS_SET] + [device_id, r["t"]])
        if "zone_plan" in r:  # sent in the first status after the sensor starts
            self.db.run("INSERT INTO zone_plans VALUES (?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
                            "t = excluded.t, plan = excluded.plan WHERE excluded.t >= zone_plans.t",
                            (device_id, r["t"], json.dumps(r["zone_plan"], separators=(",", ":"))))

    def zone_plan(self, device_id: str) -> tuple[int, dict[str, Any]] | None:
        """(status time, plan) of the newest zone plan the sensor sent, or None."""
        row = self.db.one("SELECT t, plan FROM zone_plans WHERE device_id = ?", (device_id,))
        return (int(row[0]), json.loads(row[1])) if row else None

    def count(self, what: str) -> int:
        if what == "duplicate_records":
            row = self.db.one("SELECT n FROM counters WHERE name = 'duplicate_records'")
            return int(row[0]) if row else 0
        if what not in ("records", "batches", "devices"):
            raise ValueError(what)
        row = self.db.one(f"SELECT COUNT(*) FROM {what}")
        return int(row[0]) if row else 0

    def record_seqs(self, device_id: str, outbox_id: str | None = None) -> list[int]:
        q = "SELECT seq FROM records WHERE device_id=?" + (" AND outbox_id=?" if outbox_id else "") + " ORDER BY seq"
        return [int(r[0]) for r in self.db.all(q, (device_id, outbox_id) if outbox_id else (device_id,))]

    def bodies(self, device_id: str, schema: str | None = None) -> list[str]:
        q = "SELECT body FROM records WHERE device_id=?" + (" AND schema=?" if schema else "")
        return [r[0] for r in self.db.all(q + " ORDER BY outbox_id, seq", (device_id, schema) if schema
                                          else (device_id,))]

    def ota_results(self, release: str) -> dict[str, str]:
        """device id -> its latest umbra.ota/1 result for `release`."""
        return {r[0]: r[1] for r in self.db.all("SELECT device_id, result FROM ota_results WHERE release = ?",
                                                (release,))}

    def owner(self, device_id: str) -> str | None:
        row = self.db.one("SELECT tenant FROM sensors WHERE device_id = ?", (device_id,))
        return str(row[0]) if row else None

    def device_ids(self) -> list[str]:
        return [r[0] for r in self.db.all("SELECT device_id FROM devices ORDER BY device_id")]

    def devices(self, after: str = "", limit: int = 100_000) -> list[tuple]:
        """Fleet rows in device-id order (keyset paging from `after`), columns as `DEVICE_COLUMNS`."""
        return self.db.all(f"SELECT {', '.join(DEVICE_COLUMNS)} FROM devices WHERE device_id > ? "
                           "ORDER BY device_id LIMIT ?", (after, limit))

    def device_signatures(self, after: str = "", limit: int = 100_000) -> list[tuple[str, float | None, str]]:
        """(device id, last seen, signature) per fleet row in device-id order: the signature changes whenever a
        column of the row does, so a cached rendering of a row is reused until it does; three values a row to
        read instead of 15. On PostgreSQL it is the row version's xmin (the transaction that wrote it: every
        update writes a new version), on SQLite one text of every other column."""
        return self.db.all(f"SELECT device_id, last_seen, {self._signature()} FROM devices WHERE device_id > ? "
                           "ORDER BY device_id LIMIT ?", (after, limit))

    def devices_by_id(self, ids: Sequence[str]) -> list[tuple]:
        """(signature, *DEVICE_COLUMNS) of the named devices (those that exist), 500 ids a statement."""
        out: list[tuple] = []
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            out += self.db.all(f"SELECT {self._signature()}, {', '.join(DEVICE_COLUMNS)} FROM devices "
                               f"WHERE device_id IN ({', '.join('?' * len(part))})", part)
        return out

    def devices_signed(self, after: str = "", limit: int = 100_000) -> list[tuple]:
        """(signature, *DEVICE_COLUMNS) of a page of the fleet, as `devices`."""
        return self.db.all(f"SELECT {self._signature()}, {', '.join(DEVICE_COLUMNS)} FROM devices "
                           "WHERE device_id > ? ORDER BY device_id LIMIT ?", (after, limit))

    def _signature(self) -> str:
        if self.db.postgres:
            return "xmin::text"
        return " || ',' || ".join(f"quote({c})" for c in DEVICE_COLUMNS if c not in ("device_id", "last_seen"))


DEVICE_COLUMNS = ("device_id", "hardware_id", "cert_serial", "cert_expires", "firmware", "slot", "profile",
                  "last_seen", "status_t", "uptime_s", "fps", "overruns", "detector", "outbox_records", "last_error")

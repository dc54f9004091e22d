"""A worker on PostgreSQL takes batches on its pool of database threads (`CloudConfig.db_threads`), each with a
connection of its own, off the event loop: a batch whose transaction waits on the server does not hold up the
next one, and exactly once holds with several of one worker's transactions open at once. Over real mutual TLS
on 127.0.0.1, against a real PostgreSQL server (and SQLite, where it applies)."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from fractions import Fraction
from pathlib import Path

import aiohttp
import pytest

from cloud.app import DEV_DEVICE, Cloud, CloudConfig
from cloud.db import Db
from cloud.harness import CloudThread
from hal.clock import SystemClock
from trust.keys import H_NONCE, BatchKey, KeyRing, sign_headers
from trust.tls import client_context

STATUS = {"schema": "umbra.status/1", "firmware": "1.0.0", "profile": "aggregates", "uptime_s": 1.0,
          "outbox_records": 0, "dropped": {}}


def _batch(seq: int, batch_id: str | None = None) -> bytes:
    return json.dumps({"schema": "umbra.batch/1", "device_id": DEV_DEVICE, "outbox_id": "0" * 16,
                       "batch_id": batch_id or secrets.token_hex(16), "seq": seq, "seqs": [seq],
                       "records": [{**STATUS, "t": int(time.time())}]}).encode()


class Device:
    """The dev device's side of the channel: its mutual-TLS context and its current signing key."""

    def __init__(self, ct: CloudThread) -> None:
        p = ct.cloud.pki
        self.ssl = client_context(p.ca_cert, p.device_cert, p.device_key)
        self.key: BatchKey = KeyRing(p.root / "device_keys.json").current(time.time())
        self.url = f"https://localhost:{ct.port}/v1/batches"

    def headers(self, body: bytes) -> dict[str, str]:
        return {**sign_headers(self.key, "POST", "/v1/batches", DEV_DEVICE, body, time.time()),
                "Content-Type": "application/json"}

    async def post(self, http: aiohttp.ClientSession, body: bytes, headers: dict[str, str] | None = None) -> dict:
        async with http.post(self.url, data=body, headers=headers or self.headers(body), ssl=self.ssl) as r:
            assert r.status == 200, await r.text()
            return dict(await r.json())


async def _lock_waited(url: str) -> None:
    """Returns once some transaction waits for a lock (PostgreSQL's pg_locks: a lock not granted)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while not (await (await conn.execute("SELECT 1 FROM pg_locks WHERE NOT granted")).fetchall()):
            await asyncio.sleep(0.01)  # the server's state is polled, nothing is timed


def test_a_batch_waiting_on_the_database_does_not_hold_up_the_next(cloud_db: str, tmp_path: Path) -> None:
    """Batch A's nonce is held by another transaction, so A's transaction waits on the server; batch B, sent
    after it, is stored and acknowledged meanwhile, and A is stored once the other transaction is gone. Before
    the database threads, A's wait blocked the worker's event loop and B was not even read until it ended."""
    if not cloud_db:
        pytest.skip("SQLite: one connection and one writer (the write lock at BEGIN); batches go one at a time")
    import psycopg

    ct = CloudThread(tmp_path / "cloud", SystemClock(), database=cloud_db)
    dev = Device(ct)
    body_a, body_b = _batch(1), _batch(2)
    head_a = dev.headers(body_a)
    other = psycopg.connect(cloud_db)  # not autocommit: its insert stays uncommitted, holding the nonce
    other.execute("INSERT INTO nonces VALUES (%s, %s)", (head_a[H_NONCE], int(time.time())))

    async def go() -> tuple[dict, bool, dict]:
        async with aiohttp.ClientSession() as http:
            await dev.post(http, _batch(3))  # the device's key and row are read once, before the test proper
            a = asyncio.create_task(dev.post(http, body_a, head_a))
            await asyncio.wait_for(_lock_waited(cloud_db), 60)  # A's transaction waits on the server
            b = await asyncio.wait_for(dev.post(http, body_b), 60)
            a_waiting = not a.done()
            other.rollback()  # the nonce is free again: A goes on
            return b, a_waiting, await asyncio.wait_for(a, 60)

    try:
        b, a_waiting, a = asyncio.run(go())
    finally:
        other.rollback()
        other.close()
        ct.close()
    assert b["stored"] == 1 and a_waiting
    assert a["stored"] == 1 and not a["duplicate"]
    assert ct.cloud.store.record_seqs(DEV_DEVICE) == [1, 2, 3]
    ct.cloud.store.close()


def test_one_batch_sent_eight_times_at_once_is_stored_once(cloud_db: str, tmp_path: Path) -> None:
    """Eight resends of one batch (each signed afresh) reach one worker at once: on PostgreSQL up to
    db_threads of them are in their transactions together. One is stored, seven are acknowledged as
    duplicates, its record is held once."""
    ct = CloudThread(tmp_path / "cloud", SystemClock(), database=cloud_db)
    dev = Device(ct)
    body = _batch(1, "b" * 32)

    async def go() -> list[dict]:
        async with aiohttp.ClientSession() as http:
            return list(await asyncio.gather(*(dev.post(http, body) for _ in range(8))))

    try:
        acks = asyncio.run(go())
    finally:
        ct.close()
    assert sorted(a["duplicate"] for a in acks) == [False] + [True] * 7
    assert sum(a["stored"] for a in acks) == 1
    assert ct.cloud.store.record_seqs(DEV_DEVICE) == [1] and ct.cloud.store.count("duplicate_records") == 0
    ct.cloud.store.close()


def test_each_thread_has_its_own_postgresql_connection(cloud_db: str, tmp_path: Path) -> None:
    """On PostgreSQL a thread's open transaction is its own: another thread's statements neither join it nor
    see its rows until it commits. SQLite keeps one connection for every thread."""
    db = Db(cloud_db or str(tmp_path / "cloud.sqlite"))
    db.run("CREATE TABLE t (a TEXT PRIMARY KEY)")
    inside, done = threading.Event(), threading.Event()
    seen: list[list[tuple]] = []

    def writer() -> None:
        with db.tx():
            db.run("INSERT INTO t VALUES (?)", ("x",))
            inside.set()
            done.wait(30)

    if not cloud_db:
        assert db.connections == 1
        db.close()
        return
    t = threading.Thread(target=writer)
    t.start()
    assert inside.wait(30)
    seen.append(db.all("SELECT a FROM t"))  # this thread's connection: the writer's row is not committed yet
    done.set()
    t.join(30)
    seen.append(db.all("SELECT a FROM t"))
    assert seen == [[], [("x",)]] and db.connections == 2
    db.close()


def test_db_threads_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="db_threads"):
        Cloud(CloudConfig(data_dir=str(tmp_path), db_threads=0), SystemClock())


def test_a_pipelined_transaction_rolls_back_on_an_error_read_midway_or_raised(cloud_db: str, tmp_path: Path) -> None:
    """Inside a pipeline (PostgreSQL: BEGIN and COMMIT sent as its statements) a transaction whose statement
    fails when its result is read, or whose caller raises, stores nothing, and the connection takes the next
    transaction; one that ends normally is committed by the pipeline's end."""
    db = Db(cloud_db or str(tmp_path / "cloud.sqlite"))
    db.run("CREATE TABLE t (a TEXT PRIMARY KEY)")
    db.run("INSERT INTO t VALUES (?)", ("x",))
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        with db.pipeline(), db.tx():
            db.run("INSERT INTO t VALUES (?)", ("z",))
            db.all("INSERT INTO t VALUES (?) RETURNING a", ("x",))  # refused, seen at the read
            db.run("INSERT INTO t VALUES (?)", ("y",))
    with pytest.raises(LookupError):
        with db.pipeline(), db.tx():
            db.run("INSERT INTO t VALUES (?)", ("z",))
            assert db.all("SELECT a FROM t WHERE a = ?", ("z",)) == [("z",)]  # inside, it is there
            raise LookupError("the caller gives up")
    with db.pipeline(), db.tx():
        db.run("INSERT INTO t VALUES (?)", ("w",))
    assert db.all("SELECT a FROM t ORDER BY a") == [("w",), ("x",)]
    db.close()


def test_a_new_batch_waits_for_postgresql_three_times(cloud_db: str, tmp_path: Path) -> None:
    """A new batch with a status, an aggregate and the audit head, the privacy watch included, waits for the
    server's answers three times (the nonce and batch claim; the records, the audit head, the release, the
    window's charge and the day's row; the commit with what derives from the records). Counted as psycopg's
    waits for results (fetches and syncs); the same count gives 11 on main (its transaction block synced at
    BEGIN, at the block's end and at COMMIT, and the watch read its statements one after the other)."""
    if not cloud_db:
        pytest.skip("SQLite: in process, no round trips")
    import psycopg

    cloud = Cloud(CloudConfig(data_dir=str(tmp_path / "c"), database=cloud_db), SystemClock())
    waits: list[str] = []
    real = psycopg.Connection.wait

    def counting(self: psycopg.Connection, gen: object, *a: object, **k: object) -> object:
        name = getattr(getattr(gen, "gi_code", None), "co_name", "")
        if name in ("_fetch_gen", "_sync_gen", "_exit_gen") or (name == "_enter_gen" and self._pipeline is not None
                                                                and self._pipeline.level > 0):
            waits.append(name)
        return real(self, gen, *a, **k)  # type: ignore[arg-type]

    now = time.time()
    agg = {"schema": "umbra.aggregate/1", "window_start": int(now) // 30 * 30, "window_s": 30, "metric": "line_flow",
           "zone": "door", "values": [3, 2], "k": 5, "epsilon": 0.1, "sensitivity": 1, "mechanism": "discrete_laplace"}
    doc = {"audit_head": {"counter": 1, "seq": 1, "hash": "ab" * 32}, "records": [agg]}
    rows = [(1, "umbra.status/1", json.dumps({**STATUS, "t": int(now)})), (2, "umbra.aggregate/1", json.dumps(agg))]
    psycopg.Connection.wait = counting  # type: ignore[method-assign]
    try:
        got = cloud.store.store_batch("d1", "a" * 32, "o" * 16, 1, now, rows,
                                      on_new=lambda: cloud.watch.check("d1", doc, now, device_locked=True),
                                      nonce=(secrets.token_hex(16), int(now), int(now) - 600))
    finally:
        psycopg.Connection.wait = real  # type: ignore[method-assign]
    assert got == (True, 2) and cloud.watch.ledger("d1") == {"line_flow": {int(now) // 86_400: Fraction(1, 10)}}
    assert len(waits) == 3, waits
    cloud.store.close()

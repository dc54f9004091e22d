"""The cloud's ingest path after its CPU cuts, on both backends (SQLite, and a real PostgreSQL server): the
signing key and the device's newest key read in one statement agree with the two reads they replace; result-less
statements on the kept cursor commit and roll back with their transaction; two workers' transactions for one
device are ordered by the device row's lock (what lets the privacy watch skip its own lock); the per-stage CPU
counters count what a real upload over HTTP went through; the bench's TLS cost runs the cloud's own mutual TLS."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from cloud.app import DEV_DEVICE, Cloud, CloudConfig
from cloud.db import Db
from cloud.store import Store
from hal.clock import SystemClock
from trust.keys import BatchKey, KeyRing, sign_headers


def _url(cloud_db: str, tmp_path: Path) -> str:
    return cloud_db or str(tmp_path / "cloud.sqlite")


def test_key_and_newest_agree_with_the_two_reads(cloud_db: str, tmp_path: Path) -> None:
    s = Store(_url(cloud_db, tmp_path))
    old, mid, new = (BatchKey(f"k{i}", bytes([i]) * 32, 1000, 2000 + 100 * i) for i in range(3))
    for k in (mid, old, new):
        s.add_key("d1", k)
    s.add_key("d2", BatchKey("k9", b"\x09" * 32, 1000, 9000))  # another device's newer key never shows
    for kid in ("k0", "k1", "k2", "k9", "nope"):
        assert s.key_and_newest("d1", kid) == (s.key("d1", kid), s.newest_key("d1"))
    assert s.key_and_newest("d1", "k0") == (old, new)
    assert s.key_and_newest("d3", "k0") == (None, None)
    s.close()


def test_run_commits_and_rolls_back_with_its_transaction(cloud_db: str, tmp_path: Path) -> None:
    db = Db(_url(cloud_db, tmp_path))
    db.run("CREATE TABLE t (a TEXT PRIMARY KEY)")
    with db.pipeline(), db.tx():
        db.run("INSERT INTO t VALUES (?)", ("x",))
        db.run("INSERT INTO t VALUES (?)", ("y",))
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        with db.pipeline(), db.tx():
            db.run("INSERT INTO t VALUES (?)", ("z",))
            db.run("INSERT INTO t VALUES (?)", ("x",))  # refused: the whole transaction goes
    assert db.all("SELECT a FROM t ORDER BY a") == [("x",), ("y",)]
    db.run("INSERT INTO t VALUES (?)", ("w",))  # the kept cursor still works after the failed transaction
    assert db.all("SELECT a FROM t ORDER BY a") == [("w",), ("x",), ("y",)]
    db.close()


def test_two_transactions_for_one_device_watch_one_after_the_other(cloud_db: str, tmp_path: Path) -> None:
    """A batch's `on_new` (the privacy watch) does not start while another transaction of the same device that
    has passed the device-row upsert is open; it runs as soon as that one commits."""
    if not cloud_db:
        pytest.skip("SQLite takes the whole database's write lock at BEGIN: one writer at a time anyway")
    first, second = Store(cloud_db), Store(cloud_db)
    first.store_batch("d1", "a" * 32, "o" * 16, 1, 100.0, [(1, "umbra.track/1", "{}")])  # the device row exists
    entered, release, watched = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(30)

    t1 = threading.Thread(target=first.store_batch, args=("d1", "b" * 32, "o" * 16, 2, 101.0,
                                                          [(2, "umbra.track/1", "{}")]), kwargs={"on_new": hold})
    t1.start()
    assert entered.wait(30)
    t2 = threading.Thread(target=second.store_batch, args=("d1", "c" * 32, "o" * 16, 3, 102.0,
                                                           [(3, "umbra.track/1", "{}")]),
                          kwargs={"on_new": watched.set})
    t2.start()
    t2.join(1.5)
    assert not watched.is_set()  # waiting on the device row the first transaction holds
    release.set()
    t1.join(30)
    t2.join(30)
    assert watched.is_set() and first.count("batches") == 3
    first.close()
    second.close()


def test_stage_counters_count_a_real_upload(cloud_db: str, tmp_path: Path) -> None:
    cloud = Cloud(CloudConfig(data_dir=str(tmp_path / "c"), database=cloud_db), SystemClock(),
                  insecure_identity_header=True)
    cloud.stage_cpu = Counter()
    key = KeyRing(cloud.pki.root / "device_keys.json").current(time.time())
    rec = {"schema": "umbra.status/1", "t": int(time.time()), "firmware": "1.0.0", "profile": "aggregates",
           "uptime_s": 1.0, "outbox_records": 0, "dropped": {}}

    async def go() -> list[dict]:
        runner, port = await cloud.start(host="127.0.0.1", port=0, tls=False)
        out = []
        try:
            async with aiohttp.ClientSession() as http:
                for i in range(3):
                    body = json.dumps({"schema": "umbra.batch/1", "device_id": DEV_DEVICE, "outbox_id": "0" * 16,
                                       "batch_id": secrets.token_hex(16), "seq": i + 1, "seqs": [i + 1],
                                       "records": [rec]}).encode()
                    h = sign_headers(key, "POST", "/v1/batches", DEV_DEVICE, body, time.time())
                    async with http.post(f"http://127.0.0.1:{port}/v1/batches", data=body,
                                         headers={**h, "Content-Type": "application/json",
                                                  "X-Umbra-Device": DEV_DEVICE}) as r:
                        assert r.status == 200, await r.text()
                        out.append(await r.json())
        finally:
            await runner.cleanup()
        return out

    acks = asyncio.run(go())
    assert [a["stored"] for a in acks] == [1, 1, 1]
    c = cloud.stage_cpu
    assert c["batches"] == 3
    assert all(c[k] > 0 for k in ("signature", "json_parse", "schema_validate", "store_tx"))
    cloud.store.close()


def test_the_bench_tls_cost_runs_the_clouds_mutual_tls(tmp_path: Path) -> None:
    from bench.fleet_scale import tls_costs

    Cloud(CloudConfig(data_dir=str(tmp_path / "c")), SystemClock()).store.close()  # the dev PKI
    got = tls_costs(tmp_path / "c", b"x" * 1500, b"y" * 300, n=6)
    assert got["full_ms"] > 0 and got["resumed_ms"] > 0 and got["record_ms"] > 0
    assert got["resumed_share"] == 1.0

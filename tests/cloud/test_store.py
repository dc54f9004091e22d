"""The cloud store on both backends (SQLite, and a real PostgreSQL server): migrations in order and once,
exactly once across worker processes racing on the same batches, the fleet rows derived from records."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from cloud.db import Db, _statements, migrations
from cloud.errors import DbError
from cloud.store import Peer, Store


def _url(cloud_db: str, tmp_path: Path) -> str:
    return cloud_db or str(tmp_path / "cloud.sqlite")


def test_migrations_apply_in_order_once(cloud_db: str, tmp_path: Path) -> None:
    url = _url(cloud_db, tmp_path)
    db = Db(url)
    assert db.version() == len(migrations()) >= 2
    assert db.all("SELECT version FROM schema_version ORDER BY version") == [(v,) for v, _, _ in migrations()]
    db.close()
    again = Db(url)  # a second start (another worker) applies nothing
    assert again.all("SELECT COUNT(*) FROM schema_version") == [(len(migrations()),)]
    again.close()


def test_statements_split_and_drop_comments() -> None:
    assert _statements("-- a comment; with a semicolon\nCREATE TABLE a (x INT);\n\nCREATE TABLE b (y INT);") == [
        "CREATE TABLE a (x INT)", "CREATE TABLE b (y INT)"]


def test_an_unreachable_database_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DbError, match="cannot open the cloud database postgresql://umbra:\\*\\*\\*@"):
        Db(f"postgresql://umbra:secret@/nope?host={tmp_path}&port=5999&connect_timeout=2")


def _rows(n: int, base: int = 1) -> list[tuple[int, str, str]]:
    return [(base + i, "umbra.track/1", json.dumps({"i": base + i})) for i in range(n)]


def test_a_batch_is_stored_once_and_its_records_never_twice(cloud_db: str, tmp_path: Path) -> None:
    s = Store(_url(cloud_db, tmp_path))
    assert s.store_batch("d1", "b" * 32, "o" * 16, 1, 100.0, _rows(5)) == (True, 5)
    fresh: list = []
    assert s.store_batch("d1", "b" * 32, "o" * 16, 1, 101.0, _rows(5), fresh_out=fresh) == (False, 0)
    assert fresh == []  # a resend pushes nothing
    assert s.store_batch("d1", "c" * 32, "o" * 16, 2, 102.0, _rows(5, base=4)) == (True, 3)  # seqs 4, 5 held
    assert s.count("records") == 8 and s.count("duplicate_records") == 2 and s.count("batches") == 2
    assert s.record_seqs("d1") == list(range(1, 9))
    s.close()


def _worker(url: str, start: mp.synchronize.Event, out: mp.Queue) -> None:  # type: ignore[name-defined]
    s = Store(url)
    start.wait()
    new = stored = 0
    for b in range(40):
        fresh, n = s.store_batch(f"d{b % 4}", f"{b:032x}", "a" * 16, b + 1, 1.0, _rows(10, base=b * 10 + 1))
        new += fresh
        stored += n
    s.close()
    out.put((new, stored))


def test_exactly_once_holds_across_worker_processes(cloud_db: str, tmp_path: Path) -> None:
    url = _url(cloud_db, tmp_path)
    Store(url).close()  # migrated before the race
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, start, out)) for _ in range(3)]
    for p in procs:
        p.start()
    start.set()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sum(g[0] for g in got) == 40 and sum(g[1] for g in got) == 400  # each batch claimed by one worker
    s = Store(url)
    assert s.count("records") == 400 and s.count("batches") == 40 and s.count("duplicate_records") == 0
    s.close()


def _status(t: int, **kw: object) -> str:
    return json.dumps({"schema": "umbra.status/1", "t": t, "firmware": "1.2.0", "profile": "tracks",
                       "uptime_s": 10.0, "outbox_records": 3, "dropped": {}, "detector": "cpu", "overruns": 1, **kw})


def test_the_fleet_row_follows_the_newest_status_and_the_certificate(cloud_db: str, tmp_path: Path) -> None:
    s = Store(_url(cloud_db, tmp_path))
    s.store_batch("d1", "1" * 32, "o" * 16, 1, 500.0, [(1, "umbra.status/1", _status(200, fps=9.5, slot="b"))],
                  Peer("0A1B", 1_900_000_000))
    s.store_batch("d1", "2" * 32, "o" * 16, 2, 400.0, [(2, "umbra.status/1", _status(100, firmware="1.0.0"))])
    row = s.db.one("SELECT firmware, slot, fps, last_seen, cert_serial, cert_expires, status_t FROM devices")
    assert row == ("1.2.0", "b", 9.5, 500.0, "0A1B", 1_900_000_000, 200)  # the older status changed nothing
    ota = [(1, "installed", 10), (2, "committed", 10), (3, "installed", 9)]
    for seq, result, t in ota:
        s.store_batch("d1", f"{seq + 10:032x}", "p" * 16, seq, 600.0, [(seq, "umbra.ota/1", json.dumps(
            {"schema": "umbra.ota/1", "t": t, "release": "2.0", "from_version": "1.2.0", "result": result}))])
    assert s.ota_results("2.0") == {"d1": "committed"}
    s.close()


def test_the_nonce_is_claimed_in_the_batchs_transaction(cloud_db: str, tmp_path: Path) -> None:
    from cloud.store import Replay

    store = Store(_url(cloud_db, tmp_path))
    rows = [(1, "umbra.track/1", "{}")]
    nonce = ("n" * 32, 1_800_000_000, 1_799_999_000)

    def boom() -> None:
        raise RuntimeError("the watch failed")

    with pytest.raises(RuntimeError):  # the transaction rolled back: nonce and batch both free again
        store.store_batch("dev", "b1", "o1", 1, 1.0, rows, on_new=boom, nonce=nonce)
    assert store.count("batches") == 0
    assert store.store_batch("dev", "b1", "o1", 1, 1.0, rows, nonce=nonce) == (True, 1)
    with pytest.raises(Replay):  # the same signed request again, even for another batch: nothing stored
        store.store_batch("dev", "b2", "o1", 2, 1.0, [(2, "umbra.track/1", "{}")], nonce=nonce)
    assert store.count("batches") == 1 and store.record_seqs("dev") == [1]
    assert store.store_batch("dev", "b1", "o1", 1, 1.0, rows, nonce=("m" * 32, *nonce[1:])) == (False, 0)
    assert store.seen_nonce("m" * 32, nonce[1], nonce[2]) and not store.seen_nonce("k" * 32, nonce[1], nonce[2])
    store.close()

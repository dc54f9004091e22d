"""The outbox damaged while the sensor runs (third attacker sweep, issue 15): between writes, its database,
its WAL, its shared-memory index, all of them or their folder are deleted, or another file (another outbox,
garbage) is renamed over the database. After every write that returned, what a restart would find on the
disk at the outbox's path (the files copied as a power cut would leave them) must hold every record enqueued
and not acknowledged; each damage is counted (`Outbox.recreated`) and reported in the status record. Real
SQLite. On the old code a deleted WAL went unnoticed: every later commit went to the unlinked WAL, lost at the
next start, and the status record said nothing of a damage."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.config.sync import OutboxConfig
from firmware.sync.outbox import Outbox

DAMAGE = ("db", "wal", "shm", "all", "folder", "other outbox over it", "garbage over it")


def damage(path: Path, how: str, tmp: Path) -> None:
    if how in ("db", "wal", "shm"):
        Path(str(path) + {"db": "", "wal": "-wal", "shm": "-shm"}[how]).unlink(missing_ok=True)
    elif how == "all":
        for f in path.parent.glob(path.name + "*"):
            f.unlink()
    elif how == "folder":
        shutil.rmtree(path.parent)
    elif how == "other outbox over it":
        other = tmp / "other.sqlite"
        Outbox(OutboxConfig(path=str(other)), validate=lambda r: None).close()
        os.replace(other, path)
    else:
        (tmp / "junk").write_bytes(b"not a database" * 100)
        os.replace(tmp / "junk", path)


def on_disk(path: Path, tmp: Path) -> list[int]:
    """The records a restart now would find: the outbox's files copied as they stand, opened elsewhere."""
    snap = tmp / "snap"
    shutil.rmtree(snap, ignore_errors=True)
    snap.mkdir()
    for suffix in ("", "-wal"):
        if Path(str(path) + suffix).exists():
            shutil.copyfile(str(path) + suffix, snap / ("o.sqlite" + suffix))
    if not (snap / "o.sqlite").exists():
        return []
    db = sqlite3.connect(snap / "o.sqlite")
    try:
        return sorted(int(b.split('"n":')[1].rstrip("}")) for (b,) in db.execute("SELECT body FROM records"))
    except sqlite3.DatabaseError:
        return []
    finally:
        db.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.tuples(st.sampled_from(DAMAGE), st.integers(1, 5), st.booleans()), min_size=1, max_size=6))
def test_no_record_is_lost_to_a_damage_while_running(tmp_path_factory: pytest.TempPathFactory,
                                                     plan: list[tuple[str, int, bool]]) -> None:
    tmp = tmp_path_factory.mktemp("ob")
    path = tmp / "box" / "outbox.sqlite"
    ob = Outbox(OutboxConfig(path=str(path)), validate=lambda r: None)
    n, waiting = 0, set()
    try:
        for how, count, ack in plan:
            ob.enqueue([{"schema": "umbra.status/1", "n": n + i} for i in range(3)])
            waiting |= {n, n + 1, n + 2}
            n += 3
            damage(path, how, tmp)
            for _ in range(count):
                ob.enqueue([{"schema": "umbra.status/1", "n": n}])
                waiting.add(n)
                n += 1
                assert set(on_disk(path, tmp)) >= waiting, how
            if ack:
                batch = ob.take_batch()
                assert batch is not None
                ob.ack(batch.batch_id)
                waiting -= {int(b.split('"n":')[1].rstrip("}")) for b in batch.bodies}
                assert set(on_disk(path, tmp)) >= waiting, how
        assert ob.recreated >= 1
    finally:
        ob.close()
    again = Outbox(OutboxConfig(path=str(path)), validate=lambda r: None)
    assert len(again) == len(waiting)
    again.close()


@pytest.mark.parametrize("how", DAMAGE)
def test_each_damage_is_counted_and_reported_in_the_status_record(tmp_path: Path, how: str) -> None:
    import json
    from types import SimpleNamespace

    from firmware.sync.service import StatusSink

    path = tmp_path / "box" / "outbox.sqlite"
    ob = Outbox(OutboxConfig(path=str(path)))
    loop = SimpleNamespace(stats=SimpleNamespace(frames=0, overruns=0, camera_stalls=0, camera_lost=0, camera_fault=""),
                           detector=SimpleNamespace(backend="cpu"))
    sink = StatusSink(ob, loop, 1000.0, "aggregates", 10.0, None)  # type: ignore[arg-type]
    sink(SimpleNamespace(wall=1000.0))  # type: ignore[arg-type]
    damage(path, how, tmp_path)
    sink(SimpleNamespace(wall=1010.0))  # type: ignore[arg-type]
    sink(SimpleNamespace(wall=1020.0))  # type: ignore[arg-type]
    batch = ob.take_batch()
    ob.close()
    assert batch is not None
    got = [json.loads(b) for b in batch.bodies]
    assert [r["t"] for r in got] == [1000, 1010, 1020]
    assert "outbox_recreated" not in got[0] and got[2]["outbox_recreated"] == 1, got

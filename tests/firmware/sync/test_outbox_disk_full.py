"""The outbox's disk fills mid-run (third attacker sweep, issue 15): SQLite answers SQLITE_FULL ("database or
disk is full"), injected here with the database's page limit (`PRAGMA max_page_count`, the same error a full
partition gives). Nothing handed to the outbox may be lost while the sensor runs: every enqueue returns, its
records wait in memory (bounded, the most expendable dropped first and counted), the fault is counted and in
the status record, and once there is room again the next write stores them all, in order, with no restart.
On the old code the first full write raised OutboxError: the tick's records were lost and the run ended."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.config.sync import OutboxConfig
from firmware.sync import outbox as outbox_mod
from firmware.sync.outbox import Outbox
from firmware.sync.service import StatusSink


def _limit(ob: Outbox, pages: int) -> None:
    ob._db.execute(f"PRAGMA max_page_count = {pages}")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.tuples(st.integers(1, 30), st.booleans()), min_size=2, max_size=12))
def test_a_full_disk_loses_nothing_and_resumes_when_room_returns(tmp_path_factory, plan) -> None:
    path = tmp_path_factory.mktemp("ob") / "outbox.sqlite"
    ob = Outbox(OutboxConfig(path=str(path)), validate=lambda r: None)
    n = 0
    ob.enqueue([{"schema": "umbra.status/1", "n": -1}])
    full_pages = int(ob._db.execute("PRAGMA page_count").fetchone()[0])
    for count, full in plan:
        _limit(ob, full_pages if full else 1_000_000)
        assert ob.enqueue([{"schema": "umbra.status/1", "n": n + i, "pad": "x" * 300} for i in range(count)]) == count
        n += count
        assert len(ob) == n + 1
    _limit(ob, 1_000_000)
    got = []
    while (batch := ob.take_batch()) is not None:
        got += [json.loads(b)["n"] for b in batch.bodies]
        ob.ack(batch.batch_id)
    ob.close()
    assert got == list(range(-1, n))  # every record, once, in order
    assert ob.write_failures == 0 or any(full for _, full in plan)


def test_the_fault_is_counted_and_reported_in_the_status_record(tmp_path: Path) -> None:
    ob = Outbox(OutboxConfig(path=str(tmp_path / "outbox.sqlite")))
    loop = SimpleNamespace(stats=SimpleNamespace(frames=0, overruns=0, camera_stalls=0, camera_lost=0, camera_fault=""),
                           detector=SimpleNamespace(backend="cpu"))
    sink = StatusSink(ob, loop, 1000.0, "aggregates", 10.0, None)  # type: ignore[arg-type]
    sink(SimpleNamespace(wall=1000.0))  # type: ignore[arg-type]
    _limit(ob, int(ob._db.execute("PRAGMA page_count").fetchone()[0]))
    ob.enqueue([{"schema": "umbra.status/1", "t": 1005, "firmware": "x", "profile": "aggregates", "uptime_s": 0,
                 "outbox_records": 0, "dropped": {}, "last_error": "x" * 200}] * 100)  # no room for these
    for i in range(3):
        sink(SimpleNamespace(wall=1010.0 + 10 * i))  # type: ignore[arg-type]
    assert ob.write_failures == 4 and len(ob) == 104
    _limit(ob, 1_000_000)
    sink(SimpleNamespace(wall=1040.0))  # type: ignore[arg-type]
    batch = ob.take_batch()
    ob.close()
    assert batch is not None
    got = [json.loads(b) for b in batch.bodies]
    assert [r["t"] for r in got] == [1000] + [1005] * 100 + [1010, 1020, 1030, 1040]
    assert "outbox_write_failures" not in got[0]
    assert (got[101]["outbox_write_failures"], got[101]["outbox_pending"]) == (1, 100)
    assert (got[104]["outbox_write_failures"], got[104]["outbox_pending"]) == (4, 103)  # counted before it was written


def test_past_its_bound_the_memory_queue_drops_the_most_expendable_first(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(outbox_mod, "PENDING_MAX", 10)
    ob = Outbox(OutboxConfig(path=str(tmp_path / "outbox.sqlite")), validate=lambda r: None)
    ob.enqueue([{"schema": "umbra.status/1", "n": -1}])
    _limit(ob, int(ob._db.execute("PRAGMA page_count").fetchone()[0]))
    ob.enqueue([{"schema": "umbra.aggregate/1", "n": i, "pad": "x" * 2000} for i in range(6)])
    ob.enqueue([{"schema": "umbra.track/1", "n": 10 + i, "pad": "x" * 2000} for i in range(8)])
    assert len(ob) == 11 and ob.stats().dropped == {"track": 4}
    _limit(ob, 1_000_000)
    batch = ob.take_batch()
    ob.close()
    assert batch is not None
    assert [json.loads(b)["n"] for b in batch.bodies] == [-1, 0, 1, 2, 3, 4, 5, 14, 15, 16, 17]

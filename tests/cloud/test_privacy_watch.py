"""The cloud's own watch: the audit head travels with every batch (real mutual TLS on 127.0.0.1) and a device
whose log goes backwards is flagged; the cloud's epsilon ledger flags a window released twice and a day whose
releases pass the budget."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import pytest

from bench.privacy_attacks import BUDGET, run
from bench.privacy_attacks import DAY as DAY_N
from cloud.app import DEV_DEVICE, Cloud, CloudConfig
from cloud.privacy_watch import PrivacyWatch
from firmware.privacy.audit import AuditLog
from firmware.sync.outbox import Outbox
from firmware.sync.uploader import Uploader
from hal.clock import FakeClock
from tests.cloud.test_sync_cloud import track, with_cloud

T = 1_728_000_000.0
DAY = 20_000 * 86_400


def test_the_head_travels_with_batches_and_a_log_rolled_back_is_flagged(tmp_path: Path) -> None:
    log_path = tmp_path / "state" / "audit.jsonl"
    log = AuditLog(log_path)

    async def body(cloud: Cloud, up: Uploader, ob: Outbox, clock: FakeClock) -> None:
        nonlocal log
        up.audit_head = lambda: log.head
        for _ in range(3):
            log.append("records_released", clock.wall(), kind="track", count=1)
        snapshot = tmp_path / "snapshot"
        shutil.copytree(log_path.parent, snapshot)  # (log, head, mark) as they stand at counter 3
        ob.enqueue([track(1)])
        assert (await up.cycle()).error is None
        for _ in range(4):
            log.append("records_released", clock.wall(), kind="track", count=1)
        ob.enqueue([track(2)])
        assert (await up.cycle()).error is None
        assert cloud.watch.last_counter(DEV_DEVICE) == 7 and cloud.watch.flags() == []
        shutil.rmtree(log_path.parent)
        shutil.copytree(snapshot, log_path.parent)  # rolled back, every file of it
        log = AuditLog(log_path)  # consistent: the device itself cannot tell
        assert log.counter == 3
        log.append("records_released", clock.wall(), kind="track", count=1)
        ob.enqueue([track(3)])
        assert (await up.cycle()).error is None
        flags = cloud.watch.flags(DEV_DEVICE)
        assert [f["kind"] for f in flags] == ["audit_rewound"] and "4" in flags[0]["detail"]

    with_cloud(tmp_path, body)


def _agg(start: int, eps: float = 1.0, zone: str = "all", metric: str = "occupancy") -> dict:
    return {"schema": "umbra.aggregate/1", "window_start": start, "window_s": 900, "metric": metric, "zone": zone,
            "values": [3.0], "k": 5, "epsilon": eps, "sensitivity": 1, "mechanism": "discrete_laplace"}


def test_the_cloud_ledger_flags_epsilon_spent_twice_and_a_budget_passed(tmp_path: Path) -> None:
    watch = PrivacyWatch(tmp_path / "w.sqlite")
    day = 20_000 * 86_400
    first = [_agg(day + 900 * i, zone=z) for i in range(96) for z in ("a", "b")]  # a whole day, one eps a window
    assert watch.observe("d1", {"records": first}, 0.0) == []
    assert watch.ledger("d1") == {"occupancy": {20_000: 96}}
    again = watch.observe("d1", {"records": [_agg(day + 900 * 5, zone="a")]}, 1.0)  # the store was rewound
    assert [f["kind"] for f in again] == ["released_twice"]
    tight = PrivacyWatch(tmp_path / "t.sqlite", daily_budget={"occupancy": 10})
    flags = tight.observe("d2", {"records": [_agg(day + 900 * i) for i in range(11)]}, 0.0)
    assert [f["kind"] for f in flags] == ["budget_passed"]
    assert [f["kind"] for f in tight.flags("d2")] == ["budget_passed"] and watch.flags("d2") == []


def test_the_watch_is_shared_by_workers_and_survives_a_restart(tmp_path: Path, cloud_db: str) -> None:
    """Two cloud workers on one database (each its own data folder on PostgreSQL; SQLite lives in the folder):
    a release one worker saw is a repeat at the other, and a restarted worker still knows the head counter."""
    second = tmp_path / ("a" if not cloud_db else "b")
    a = Cloud(CloudConfig(data_dir=str(tmp_path / "a"), database=cloud_db), FakeClock(start_wall=T))
    b = Cloud(CloudConfig(data_dir=str(second), database=cloud_db), FakeClock(start_wall=T))
    head = {"seq": 7, "counter": 7, "hash": "0" * 64}
    assert a.watch.observe("d1", {"audit_head": head, "records": [_agg(DAY + 900)]}, 1.0) == []
    again = b.watch.observe("d1", {"records": [_agg(DAY + 900, zone="all")]}, 2.0)
    assert [f["kind"] for f in again] == ["released_twice"]
    a.store.close()
    restarted = Cloud(CloudConfig(data_dir=str(tmp_path / "a"), database=cloud_db), FakeClock(start_wall=T))
    assert restarted.watch.last_counter("d1") == 7
    back = restarted.watch.observe("d1", {"audit_head": {**head, "seq": 5, "counter": 5}, "records": []}, 3.0)
    assert [f["kind"] for f in back] == ["audit_rewound"]
    assert [f["kind"] for f in b.watch.flags("d1")] == ["released_twice", "audit_rewound"]  # kept for all workers
    assert b.watch.ledger("d1") == {"occupancy": {DAY // 86_400: 1}}
    b.store.close()
    restarted.store.close()


def test_a_batch_is_stored_and_watched_together_or_not_at_all(tmp_path: Path, cloud_db: str) -> None:
    cloud = Cloud(CloudConfig(data_dir=str(tmp_path / "c"), database=cloud_db), FakeClock(start_wall=T))
    rows = [(1, "umbra.aggregate/1", json.dumps(_agg(DAY)))]

    def boom() -> None:
        cloud.watch.check("d1", {"records": [_agg(DAY)]}, 1.0)
        raise RuntimeError("worker died mid-batch")

    with pytest.raises(RuntimeError):
        cloud.store.store_batch("d1", "a" * 32, "0" * 16, 1, 1.0, rows, on_new=boom)
    assert cloud.store.count("batches") == 0 and cloud.watch.ledger("d1") == {}
    flags: list[dict] = []

    def watched() -> None:
        flags.extend(cloud.watch.check("d1", {"records": [_agg(DAY)]}, 1.0))

    new, _ = cloud.store.store_batch("d1", "a" * 32, "0" * 16, 1, 1.0, rows, on_new=watched)
    assert new and flags == [] and cloud.watch.ledger("d1") == {"occupancy": {DAY // 86_400: 1}}
    cloud.store.close()


def test_a_window_is_charged_once_at_its_largest_epsilon(tmp_path: Path, cloud_db: str) -> None:
    cloud = Cloud(CloudConfig(data_dir=str(tmp_path / "c"), database=cloud_db), FakeClock(start_wall=T))
    w = cloud.watch
    assert w.observe("d1", {"records": [_agg(DAY, eps=0.5, zone="a")]}, 1.0) == []
    assert w.observe("d1", {"records": [_agg(DAY, eps=1.0, zone="b"), _agg(DAY, eps=0.25, zone="c")]}, 2.0) == []
    assert w.observe("d1", {"records": [_agg(DAY + 900, eps=0.5, zone="a")]}, 3.0) == []
    assert w.ledger("d1") == {"occupancy": {DAY // 86_400: Fraction(3, 2)}}
    cloud.store.close()


def test_a_repeat_with_a_larger_epsilon_beside_a_new_release_charges_only_the_new(tmp_path: Path,
                                                                                   cloud_db: str) -> None:
    """The watch asks for each window's charge as if every release in the batch were new (one round trip with
    the releases' inserts); when one was held already it asks again without it. Here the repeat (epsilon 1.0)
    would raise the window's charge past the new release's (0.5): only the new one counts, the repeat is
    flagged, inside a batch's store transaction as in the worker."""
    cloud = Cloud(CloudConfig(data_dir=str(tmp_path / "c"), database=cloud_db), FakeClock(start_wall=T))
    w = cloud.watch
    assert w.observe("d1", {"records": [_agg(DAY, eps=0.25, zone="a")]}, 1.0) == []
    doc = {"records": [_agg(DAY, eps=1.0, zone="a"), _agg(DAY, eps=0.5, zone="b")]}
    flags: list[dict] = []
    new, _ = cloud.store.store_batch("d1", "b" * 32, "0" * 16, 1, 2.0,
                                     [(1, "umbra.aggregate/1", json.dumps(doc["records"][0]))],
                                     on_new=lambda: flags.extend(w.check("d1", doc, 2.0, device_locked=True)))
    assert new and [f["kind"] for f in flags] == ["released_twice"]
    assert w.ledger("d1") == {"occupancy": {DAY // 86_400: Fraction(1, 2)}}  # 0.25, then raised to 0.5
    assert w.observe("d1", {"records": [_agg(DAY + 900, eps=0.5, zone="a")]}, 3.0) == []  # the next is charged
    assert w.ledger("d1") == {"occupancy": {DAY // 86_400: Fraction(1)}}
    cloud.store.close()


def test_a_log_rolled_back_and_written_up_to_the_counter_the_cloud_holds_is_flagged(tmp_path: Path,
                                                                                     cloud_db: str) -> None:
    """Rolled back offline and written again until its head counter is back where the cloud last saw it: the
    counter does not go backwards, but the same counter now signs another log."""
    cloud = Cloud(CloudConfig(data_dir=str(tmp_path / "c"), database=cloud_db), FakeClock(start_wall=T))
    log_path = tmp_path / "state" / "audit.jsonl"
    log = AuditLog(log_path)
    for i in range(3):
        log.append("records_released", T + i, kind="track", count=1)
    snapshot = tmp_path / "snapshot"
    shutil.copytree(log_path.parent, snapshot)
    for i in range(4):
        log.append("records_released", T + 10 + i, kind="track", count=1)
    seen = log.head
    assert cloud.watch.observe("d1", {"audit_head": seen, "records": []}, 1.0) == []
    assert cloud.watch.observe("d1", {"audit_head": seen, "records": []}, 2.0) == []  # the same head again: fine
    shutil.rmtree(log_path.parent)
    shutil.copytree(snapshot, log_path.parent)
    log = AuditLog(log_path)
    for i in range(4):
        log.append("records_released", T + 20 + i, kind="track", count=2)  # other entries, the same count of them
    assert log.head["counter"] == seen["counter"] and log.head["hash"] != seen["hash"]
    flags = cloud.watch.observe("d1", {"audit_head": log.head, "records": []}, 3.0)
    assert [f["kind"] for f in flags] == ["audit_forked"]
    assert cloud.watch.last_counter("d1") == seen["counter"]
    assert [f["kind"] for f in cloud.watch.observe("d1", {"audit_head": seen, "records": []}, 4.0)] == []
    cloud.store.close()


FORKS = {  # the fork rows of bench.privacy_attacks: (budget known to the cloud, default cloud) -> flags
    "fork past the head, outbox rolled back": ([], []),
    "fork past the head, outbox kept": (["budget_passed"], []),
    "fork, same windows, outbox kept": (["released_twice"], ["released_twice"]),
}


@pytest.mark.parametrize("budget", [BUDGET, 0.0])
@pytest.mark.parametrize("name", list(FORKS))
def test_a_fork_written_past_the_head_the_cloud_holds(tmp_path: Path, cloud_db: str, name: str,
                                                      budget: float) -> None:
    """The cloud holds head N; offline the device writes N+1.. (its releases in a real outbox), its log, head, mark
    and budget store (and the outbox, in the first row) are rolled back to N and it writes another N+1..; then it
    is back online. Its head never goes back nor repeats a counter the cloud holds, so the audit checks cannot
    see it; what the cloud sees is the releases. Outbox rolled back: the first fork's releases never left, the
    cloud is charged the budget once (nothing to flag). Outbox kept, other windows: both forks' releases arrive
    and pass the day's budget, flagged once the cloud knows the fleet's daily_epsilon (before, the cloud had no
    way to be told it and flagged nothing: its implied budget, epsilon times the windows in a day, is not
    passed). The same windows again: released_twice (the old code already flagged it)."""
    cloud = Cloud(CloudConfig(data_dir=str(tmp_path / "cloud"), database=cloud_db, daily_epsilon=budget),
                  FakeClock(start_wall=T))
    r = run(name, tmp_path / "device", cloud.watch)
    assert r["recorded"] == [] and r["granted"] == 5  # the device cannot tell: it granted 5 of 3
    assert r["left"] == (3 if "rolled back" in name else 5)
    assert r["cloud"] == FORKS[name][0 if budget else 1]
    day = {"occupancy": {DAY_N: Fraction(3 if "rolled back" in name or "same" in name else 5)}}
    assert cloud.watch.ledger("dev-1") == day  # one charge per window: the same windows again are not charged
    cloud.store.close()


def test_the_fleet_daily_epsilon_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="daily_epsilon"):
        Cloud(CloudConfig(data_dir=str(tmp_path), daily_epsilon=-1), FakeClock(start_wall=T))

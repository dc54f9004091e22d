"""The cloud's own watch: the audit head travels with every batch (real mutual TLS on 127.0.0.1) and a device
whose log goes backwards is flagged; the cloud's epsilon ledger flags a window released twice and a day whose
releases pass the budget."""

from __future__ import annotations

import shutil
from pathlib import Path

from cloud.app import DEV_DEVICE, Cloud
from cloud.privacy_watch import PrivacyWatch
from firmware.privacy.audit import AuditLog
from firmware.sync.outbox import Outbox
from firmware.sync.uploader import Uploader
from hal.clock import FakeClock
from tests.cloud.test_sync_cloud import track, with_cloud


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

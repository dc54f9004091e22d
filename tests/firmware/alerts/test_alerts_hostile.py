"""Alerts on a wrong clock and a full disk, as the sensor runs them (`umbra run` hands the sink its trusted clock
and audit log): a Pi booted hours off before NTP must not raise "presence outside hours" by its wrong clock (nor
stamp any alert with it), and no alert leaves that the audit log did not record first."""

from __future__ import annotations

import json

import numpy as np
import pytest

from firmware.alerts.rules import alert_sink
from firmware.config.alerts import AlertRule, AlertsConfig
from firmware.config.sensing import GeometryConfig, ZoneConfig
from firmware.privacy.audit import AuditLog
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import TickResult
from firmware.sensing.quantize import GroundState
from hal.clock import FakeClock
from hal.trustedtime import FakeNtp, SkewedClock, TrustedClock
from tests.firmware.privacy.fulldisk import FullDisk

NOON = 1_700_000_000 // 86400 * 86400 + 12 * 3600  # 12:00 UTC: the store is open
GEO = Geometry(GeometryConfig(zones=(ZoneConfig("store", ((0, 0), (10, 0), (10, 10), (0, 10))),)))
RULES = (AlertRule("presence_outside_hours", "store", open_hour=8, close_hour=20),
         AlertRule("occupancy_above", "store", limit=1))


def _tick(wall: float, people: int) -> TickResult:
    ids = np.arange(1, people + 1)
    xy = np.tile([[5.0, 5.0]], (people, 1))
    return TickResult(wall, [], [], GroundState(ids, xy, np.zeros((people, 2)), np.ones(people)))


@pytest.mark.parametrize("offset_h", [-9.0, 10.0, -24.0 * 365])
def test_a_sensor_hours_off_raises_no_alert_by_its_wrong_clock(tmp_path, offset_h) -> None:
    true = FakeClock(start_wall=NOON)
    machine, ntp = SkewedClock(true, offset_h * 3600), FakeNtp(synced=False)
    clock = TrustedClock(machine, ntp, tmp_path / "trusted_time.json")
    log = AuditLog(tmp_path / "audit.jsonl")
    got: list[dict] = []
    sink = alert_sink(AlertsConfig(enabled=True, rules=RULES, cooldown_s=60), GEO, [got.extend], log,
                      trusted=lambda: clock.trusted)
    assert sink is not None
    for _ in range(120):  # two minutes before NTP answers, two people in the open store
        sink(_tick(clock.wall(), 2))
        true.advance(1.0)
    assert got == []  # neither "outside hours" by a clock that says 03:00 nor anything stamped with it
    ntp.is_synced, machine.offset_s = True, 0.0
    for _ in range(120):
        sink(_tick(clock.wall(), 2))
        true.advance(1.0)
    assert {a["rule"] for a in got} == {"occupancy_above"}
    assert all(abs(a["t"] - true.wall()) < 300 for a in got)
    events = [json.loads(x)["event"] for x in log.path.read_text().splitlines()]
    assert events.count("alerts_held") == 1 and sink.held == 120
    released = [json.loads(x)["fields"] for x in log.path.read_text().splitlines()
                if json.loads(x)["event"] == "records_released"]
    assert sum(f["count"] for f in released if f["kind"] == "alert") == len(got)


def test_an_alert_whose_audit_entry_cannot_be_written_is_not_emitted(tmp_path, monkeypatch) -> None:
    log = AuditLog(tmp_path / "audit" / "audit.jsonl")
    got: list[dict] = []
    sink = alert_sink(AlertsConfig(enabled=True, rules=RULES[1:], cooldown_s=60), GEO, [got.extend], log)
    assert sink is not None
    FullDisk(tmp_path / "audit", 0).install(monkeypatch)
    for k in range(300):
        sink(_tick(NOON + k, 3))
    assert got == [] and sink.withheld == 5 and log.failures == 5  # one a cooldown, each counted, none out

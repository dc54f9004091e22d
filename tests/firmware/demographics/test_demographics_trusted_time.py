"""Demographics and flow groups on the sensor's trusted time: a Pi booted a day ahead, before NTP, must not open a
window on that day, charge that day's budget or stamp a record with it. Before, the hook charged tomorrow's
budget while the clock was wrong, so once NTP set it right the budget ledger saw the clock go back a day and
refused every release (aggregates too: one accountant) for the rest of the real day."""

from __future__ import annotations

import json
import random

import numpy as np

from firmware.config.demographics import DemographicsConfig
from firmware.config.privacy import PrivacyConfig
from firmware.demographics.hook import DemographicsHook
from firmware.privacy.accountant import Accountant
from firmware.privacy.audit import AuditLog
from firmware.sensing.tracker import Track
from hal.agegender import Estimate, ScriptedAgeGender
from hal.clock import FakeClock
from hal.frame import Frame
from hal.trustedtime import FakeNtp, SkewedClock, TrustedClock
from tests.firmware.demographics.test_demographics_hook import GEOMETRY

DAY = 86_400.0
WALL0 = 1_700_000_100.0


def test_a_sensor_a_day_ahead_pays_and_stamps_nothing_until_ntp_answers(tmp_path) -> None:
    cfg = DemographicsConfig(enabled=True, window_s=60, k=1, max_estimates_per_tick=4)
    log = AuditLog(tmp_path / "audit.jsonl")
    acc = Accountant(tmp_path / "budget.sqlite", {**PrivacyConfig().budgets(), **cfg.budgets()}, ledger=log)
    true = FakeClock(start_wall=WALL0)
    machine, ntp = SkewedClock(true, DAY), FakeNtp(synced=False)
    clock = TrustedClock(machine, ntp, tmp_path / "trusted_time.json")
    out: list[dict] = []
    hook = DemographicsHook(cfg, ScriptedAgeGender([Estimate(40.0, 0.2, 1.0)]), GEOMETRY, acc, out.extend, log,
                            rng=random.Random(0))
    hook.trusted = lambda: clock.trusted
    img = np.full((480, 640, 3), 50, np.uint8)
    tracks = [Track(i, (10.0 + 10 * i, 10.0, 90.0 + 10 * i, 300.0), 0.9, (0, 0), 1.0, 5) for i in range(6)]

    def run(ticks: int) -> None:
        for tick in range(ticks):
            with Frame(img.copy(), None, true.monotonic_ns(), tick, (640, 480)) as frame:
                hook(frame, tracks, clock.wall())
            true.advance(0.1)

    run(1300)  # two minutes and a bit a day ahead
    ntp.is_synced, machine.offset_s = True, 0.0
    run(1300)
    hook.close_window(clock.wall())
    today = int(true.wall() // DAY)
    assert out and all(int(r["window_start"] // DAY) == today for r in out)  # none stamped tomorrow
    assert acc.spent("demographics", true.wall() + DAY) == 0  # tomorrow's budget untouched
    assert acc.charge("occupancy", 0.5, true.wall()).granted  # the aggregates still release today
    events = [json.loads(x)["event"] for x in log.path.read_text().splitlines()]
    assert "budget_clock_back" not in events and events.count("demographics_held") == 1


def test_flow_groups_open_no_window_on_a_clock_a_day_ahead(tmp_path) -> None:
    """Flow groups the same way: nothing embedded, windowed or stamped until the time is trusted."""
    from firmware.config.flows import FlowGroupConfig
    from firmware.flows.hook import FlowGroupHook
    from hal.embedder import FakeEmbedder

    cfg = FlowGroupConfig(enabled=True, window_s=60, basis_min=10, min_count=2, crops_per_track=2, crop_gap_s=0.2)
    log = AuditLog(tmp_path / "audit.jsonl")
    true = FakeClock(start_wall=WALL0)
    machine, ntp = SkewedClock(true, DAY), FakeNtp(synced=False)
    clock = TrustedClock(machine, ntp, tmp_path / "trusted_time.json")
    out: list[dict] = []
    hook = FlowGroupHook(cfg, FakeEmbedder(), GEOMETRY, out.extend, log, np.random.default_rng(0))
    hook.trusted = lambda: clock.trusted
    img = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    tracks = [Track(i, (10.0 + 40 * i, 10.0, 90.0 + 40 * i, 300.0), 0.9, (0, 0), 1.0, 5) for i in range(6)]

    def run(ticks: int, first: int) -> None:
        for tick in range(ticks):
            with Frame(img.copy(), None, true.monotonic_ns(), first + tick, (640, 480)) as frame:
                hook(frame, [Track(t.track_id + 100 * ((first + tick) // 300), *t[1:]) for t in tracks],
                     clock.wall())
            true.advance(0.1)

    run(1300, 0)
    assert hook.embedded == 0 and out == []
    ntp.is_synced, machine.offset_s = True, 0.0
    run(3000, 1300)
    hook.close_window(clock.wall())
    today = int(true.wall() // DAY)
    assert hook.embedded > 0
    assert out and all(int(r["window_start"] // DAY) == today for r in out)
    events = [json.loads(x)["event"] for x in log.path.read_text().splitlines()]
    assert events.count("flowgroups_held") == 1

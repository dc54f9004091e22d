"""A clock that is wrong: a sensor starting with its wall clock a day behind, or a day ahead (a Raspberry Pi
before NTP), learns the time from the reference cloud (real mutual TLS on 127.0.0.1, its Date), uploads every
record it committed, and carries on when NTP later corrects the clock, without a restart. Injected clocks,
no sleeps."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cloud.app import DEV_DEVICE, Cloud, CloudConfig
from cloud.harness import device_setup
from firmware.config.privacy import PrivacyConfig
from firmware.config.sensing import GeometryConfig, ZoneConfig
from firmware.config.sync import OutboxConfig
from firmware.privacy.accountant import Accountant
from firmware.privacy.analytics import Analytics
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import TickResult
from firmware.sensing.quantize import GroundState
from firmware.sensing.records import QuantizedTrack
from firmware.sync.outbox import Outbox
from firmware.sync.uploader import Uploader
from hal.clock import FakeClock
from hal.trustedtime import FakeNtp, SkewedClock, TrustedClock


def track(i: int) -> dict:
    return QuantizedTrack(f"{i:016x}", 0, 1_700_000_000 + i, (i % 50, i % 7), 0.5, "M", i % 8, "east").to_json()


def _ticks(an: Analytics, clock: TrustedClock, true: FakeClock, seconds: int) -> None:
    """`seconds` of a scene with 8 people in one zone, one tick a second on the device's clock."""
    ids = np.arange(8)
    xy = np.column_stack((np.linspace(-4, 4, 8), np.zeros(8)))
    for _ in range(seconds):
        an(TickResult(clock.wall(), [], [], GroundState(ids, xy, np.zeros_like(xy), np.full(8, 1.7))))
        true.advance(1.0)


async def rig(tmp_path: Path, true: FakeClock, clock: TrustedClock, audit: list[tuple]
              ) -> tuple[Cloud, Any, Outbox, Analytics, Uploader]:
    """The reference cloud on the true clock (real mutual TLS on 127.0.0.1) and a device on `clock`: its
    outbox, analytics of one zone (windows of 60 s, k 2) whose audit entries go to `audit`, and its uploader."""
    privacy = PrivacyConfig(window_s=60, k=2, daily_epsilon=1000, budget_file=str(tmp_path / "budget.sqlite"))
    geo = Geometry(GeometryConfig(zones=(ZoneConfig("hall", ((-10, -10), (10, -10), (10, 10), (-10, 10))),)))
    cloud = Cloud(CloudConfig(data_dir=str(tmp_path / "cloud")), true)
    runner, port = await cloud.start(port=0)
    dev = device_setup(cloud, tmp_path / "device", port)
    ob = Outbox(OutboxConfig(path=dev.outbox_path, batch_records=40))
    an = Analytics(privacy, geo, Accountant(privacy.budget_file, privacy.budgets()), ob.enqueue,
                   audit=lambda *a, **k: audit.append(a), trusted=lambda: clock.trusted)
    return cloud, runner, ob, an, Uploader(dev.uploader, dev.tls, ob, clock, random.Random(5))


@pytest.mark.parametrize("offset_s", [-86_400.0, 86_400.0])
def test_a_day_off_then_corrected_uploads_everything_without_restart(tmp_path: Path, offset_s: float) -> None:
    true = FakeClock(start_wall=time.time() // 60 * 60 + 30)
    device_clock = SkewedClock(true, offset_s)
    ntp = FakeNtp(synced=False)
    clock = TrustedClock(device_clock, ntp, tmp_path / "trusted_time.json")
    audit: list[tuple] = []

    async def main() -> tuple[list, int, int, list[dict]]:
        cloud, runner, ob, an, up = await rig(tmp_path, true, clock, audit)
        results, n = [], 0
        try:
            assert not clock.trusted
            _ticks(an, clock, true, 90)  # the sensor keeps working before it knows the time
            for phase in range(6):
                if phase == 3:  # NTP answers: the system clock is stepped right and reported synchronised
                    device_clock.offset_s, ntp.is_synced = 0.0, True
                ob.enqueue([track(n + i) for i in range(50)])
                n += 50
                results.append(await up.cycle())
                _ticks(an, clock, true, 150)
            an.close_window()
            results.append(await up.cycle())
            return results, len(ob), cloud.store.count("records"), \
                [json.loads(b) for b in cloud.store.bodies(DEV_DEVICE)]
        finally:
            await up.close()
            ob.close()
            await runner.cleanup()
            cloud.store.close()

    results, left, stored, held = asyncio.run(main())
    assert [r.error for r in results] == [None] * 7
    aggregates = [r for r in held if r["schema"].startswith("umbra.aggregate")]
    assert left == 0 and stored == 300 + len(aggregates) and clock.trusted  # everything committed arrived
    released = [(r["window_start"], r["metric"], r.get("zone"), r.get("bucket")) for r in aggregates]
    assert aggregates and len(released) == len(set(released))  # no aggregate twice
    starts = sorted({r["window_start"] for r in aggregates})
    assert all(abs(s - true.wall()) < 86_400 / 2 for s in starts)  # none stamped with the wrong day
    assert ("window_withheld",) in [a[:1] for a in audit]  # the window seen before the time was known
    assert abs(clock.wall() - true.wall()) < 2.0  # the cloud's Date has whole seconds


def test_trusted_time_never_goes_back_below_the_persisted_floor(tmp_path: Path) -> None:
    true = FakeClock(start_wall=1_800_000_000.0)
    state = tmp_path / "trusted_time.json"
    first = TrustedClock(true, FakeNtp(synced=True), state)
    assert first.trusted and first.wall() == 1_800_000_000.0
    old = SkewedClock(FakeClock(start_wall=1_700_000_000.0), 0.0)  # a reboot with a clock from years ago
    second = TrustedClock(old, FakeNtp(synced=False), state)
    assert not second.trusted and second.wall() >= 1_800_000_000.0
    assert not second.observe_server_time(1_750_000_000.0)  # a replayed or hostile time is refused
    assert second.refused == 1 and not second.trusted
    assert second.observe_server_time(1_800_000_100.0) and second.trusted
    old.offset_s = -1e6  # the system clock stepped by hand: trusted wall time keeps to the monotonic clock
    assert second.wall() == pytest.approx(1_800_000_100.0)

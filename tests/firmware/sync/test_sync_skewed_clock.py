"""A clock that is wrong: a sensor starting with its wall clock a day behind, or a day ahead (a Raspberry Pi
before NTP), learns the time from the reference cloud (real mutual TLS on 127.0.0.1, its Date), uploads every
record it committed, and carries on when NTP later corrects the clock, without a restart. Injected clocks,
no sleeps."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from cloud.app import Cloud, CloudConfig
from cloud.harness import device_setup
from firmware.config.sync import OutboxConfig
from firmware.sensing.records import QuantizedTrack
from firmware.sync.outbox import Outbox
from firmware.sync.uploader import Uploader
from hal.clock import FakeClock
from hal.trustedtime import FakeNtp, TrustedClock


class SkewedClock:
    """The device's own clock: the true clock plus an offset that NTP will later set to zero."""

    def __init__(self, true: FakeClock, offset_s: float) -> None:
        self.true, self.offset_s = true, offset_s

    def monotonic_ns(self) -> int:
        return self.true.monotonic_ns()

    def wall(self) -> float:
        return self.true.wall() + self.offset_s

    def sleep_until_ns(self, deadline_ns: int) -> None:
        self.true.sleep_until_ns(deadline_ns)


def track(i: int) -> dict:
    return QuantizedTrack(f"{i:016x}", 0, 1_700_000_000 + i, (i % 50, i % 7), 0.5, "M", i % 8, "east").to_json()


@pytest.mark.parametrize("offset_s", [-86_400.0, 86_400.0])
def test_a_day_off_then_corrected_uploads_everything_without_restart(tmp_path: Path, offset_s: float) -> None:
    true = FakeClock(start_wall=time.time())
    device_clock = SkewedClock(true, offset_s)
    ntp = FakeNtp(synced=False)
    clock = TrustedClock(device_clock, ntp, tmp_path / "trusted_time.json")

    async def main() -> tuple[list, int, int, bool]:
        cloud = Cloud(CloudConfig(data_dir=str(tmp_path / "cloud")), true)
        runner, port = await cloud.start(port=0)
        dev = device_setup(cloud, tmp_path / "device", port)
        ob = Outbox(OutboxConfig(path=dev.outbox_path, batch_records=40))
        up = Uploader(dev.uploader, dev.tls, ob, clock, random.Random(5))
        results, n = [], 0
        try:
            assert not clock.trusted
            for phase in range(6):
                if phase == 3:  # NTP answers: the system clock is stepped right and reported synchronised
                    device_clock.offset_s, ntp.is_synced = 0.0, True
                ob.enqueue([track(n + i) for i in range(50)])
                n += 50
                results.append(await up.cycle())
                true.advance(600)
            return results, len(ob), cloud.store.count("records"), clock.trusted
        finally:
            await up.close()
            ob.close()
            await runner.cleanup()
            cloud.store.close()

    results, left, stored, trusted = asyncio.run(main())
    assert [r.error for r in results] == [None] * 6
    assert left == 0 and stored == 300 and trusted
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

"""After an outage the backlog goes at once: the uploader backs off exponentially, but looks for the cloud
every period and uploads within one period of its return (injected clock and sleep: no waiting)."""

from __future__ import annotations

import asyncio
import random
import time

from cloud.app import DEV_DEVICE, Cloud, CloudConfig
from cloud.harness import device_setup
from firmware.config.sync import OutboxConfig
from firmware.sync.outbox import Outbox
from firmware.sync.uploader import Uploader
from hal.clock import FakeClock


def test_backlog_goes_within_a_period_of_the_cloud_coming_back(tmp_path):
    clock = FakeClock(start_wall=time.time())
    t_back = clock.wall() + 5000.0  # a long outage: by then the backoff waits up to an hour between tries

    async def main() -> tuple[float, float, int]:
        cloud = Cloud(CloudConfig(data_dir=str(tmp_path / "cloud")), clock)
        runner, port = await cloud.start(port=0)
        dev = device_setup(cloud, tmp_path / "device", port, backoff_base_s=60.0, backoff_max_s=3600.0)
        await runner.cleanup()  # the cloud goes away
        outbox = Outbox(OutboxConfig(path=dev.outbox_path))
        outbox.enqueue([{"schema": "umbra.status/1", "t": int(clock.wall()), "firmware": "0.1.0",
                         "profile": "aggregates", "uptime_s": 1.0, "outbox_records": 0, "dropped": {}}])
        state: dict = {}

        async def sleep(seconds: float) -> None:
            if "runner" not in state and clock.wall() + seconds >= t_back:
                head = t_back - clock.wall()
                clock.advance(head)  # the cloud returns at t_back exactly, in the middle of this wait
                state["runner"], _ = await cloud.start(port=port)
                state["back_at"] = clock.wall()
                seconds -= head
            clock.advance(seconds)
            await asyncio.sleep(0)

        up = Uploader(dev.uploader, dev.tls, outbox, clock, random.Random(0), sleep=sleep)
        cycle = up.cycle

        async def recorded_cycle():
            res = await cycle()
            if res.error is None and res.records and "sent_at" not in state:
                state["sent_at"] = clock.wall()
            return res

        up.cycle = recorded_cycle  # type: ignore[method-assign]
        stop = asyncio.Event()
        task = asyncio.ensure_future(up.run(stop))
        while len(outbox) and clock.wall() < t_back + 7200:
            await asyncio.sleep(0.005)
        sent_at = state.get("sent_at", float("inf"))
        stop.set()
        await task
        outbox.close()
        held = len(cloud.store.bodies(DEV_DEVICE))
        await state["runner"].cleanup()
        return state["back_at"], sent_at, held

    back_at, sent_at, held = asyncio.run(main())
    assert held == 1
    assert sent_at - back_at <= 30.0 + 1.0  # one upload period after the cloud returned

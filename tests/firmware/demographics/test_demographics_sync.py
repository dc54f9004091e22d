"""Released histograms through the outbox and the uploader to the reference cloud (real mutual TLS on
127.0.0.1): the cloud validates them against umbra.demographics/1 and stores them once; one the schema
refuses (a track id added) never leaves the outbox's enqueue."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import numpy as np
import pytest

from cloud.app import DEV_DEVICE, Cloud, CloudConfig
from cloud.harness import device_setup
from firmware.config.demographics import DemographicsConfig
from firmware.config.sync import OutboxConfig
from firmware.demographics.release import release
from firmware.sync.outbox import Outbox, OutboxError
from firmware.sync.uploader import Uploader
from hal.clock import FakeClock


def test_histograms_reach_the_cloud_once_and_validated(tmp_path: Path) -> None:
    clock = FakeClock(start_wall=time.time())
    cfg = DemographicsConfig(enabled=True, window_s=900)
    recs = release({"door": np.full((6, 2), 20), "till": np.full((6, 2), 9)}, cfg, 1_700_000_100 // 900 * 900,
                   rng=random.Random(2))
    assert len(recs) == 2

    async def main() -> list[dict]:
        cloud = Cloud(CloudConfig(data_dir=str(tmp_path / "cloud")), clock)
        runner, port = await cloud.start(port=0)
        dev = device_setup(cloud, tmp_path / "device", port)
        outbox = Outbox(OutboxConfig(path=dev.outbox_path))
        uploader = Uploader(dev.uploader, dev.tls, outbox, clock, random.Random(7))
        try:
            outbox.enqueue(recs)
            with pytest.raises(OutboxError):
                outbox.enqueue([{**recs[0], "track_id": 4}])
            res = await uploader.cycle()
            assert res.error is None and len(outbox) == 0
            assert (await uploader.cycle()).error is None  # nothing left, nothing sent twice
            return [json.loads(b) for b in cloud.store.bodies(DEV_DEVICE)]
        finally:
            await uploader.close()
            outbox.close()
            await runner.cleanup()
            cloud.store.close()

    held = asyncio.run(main())
    assert held == recs

"""End to end on 127.0.0.1: the sensor loop on the shared PETS09 footage (real video decode, scripted detector
replaying the ground truth, real tracker and quantizer, built by firmware.cli.assemble.build_loop) feeds the
outbox as a sink; the uploader sends every 30 s of (fake) clock over real mutual TLS with pins to the
reference cloud; the cloud holds exactly what the loop released, in order, once."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import replace
from pathlib import Path

from cloud.app import DEV_DEVICE, Cloud, CloudConfig
from cloud.harness import device_setup
from firmware.cli.assemble import build_loop
from firmware.config import load
from firmware.config.sync import OutboxConfig
from firmware.sensing.loop import RecordSink
from firmware.sync.outbox import Outbox
from firmware.sync.uploader import Uploader
from hal.clock import FakeClock

ROOT = Path(__file__).resolve().parents[3]
TICKS = 280  # 40 s of the 7 fps sequence


def test_loop_on_footage_to_cloud_exactly_once(tmp_path: Path, shared_data: Path) -> None:
    cfg = load(ROOT / "bench" / "configs" / "pets09.toml")
    cfg = replace(cfg, camera=replace(cfg.camera, source=str(shared_data / "video" / "vtest.avi")),
                  detector=replace(cfg.detector, kind="scripted", tiles=(1, 1),
                                   ground_truth=str(shared_data / "mot/MOT15/PETS09-S2L1/gt/gt.txt")))
    clock = FakeClock(start_wall=1_700_000_000.0)
    released: list[dict] = []

    async def main() -> tuple[list[str], int]:
        cloud = Cloud(CloudConfig(data_dir=str(tmp_path / "cloud")), clock)
        runner, port = await cloud.start(port=0)
        dev = device_setup(cloud, tmp_path / "device", port)
        outbox = Outbox(OutboxConfig(path=dev.outbox_path))  # validates each record against its schema
        up = Uploader(dev.uploader, dev.tls, outbox, clock, random.Random(1))

        capture = RecordSink(lambda records: released.extend(r.to_json() for r in records))  # the last bucket's too
        loop = build_loop(cfg, ROOT / "bench" / "configs", clock, sinks=[outbox.sink, capture])
        period = 1 / cfg.loop.detect_hz
        next_upload = clock.wall() + up.config.period_s
        uploads = 0
        try:
            for _ in range(TICKS):
                assert loop.tick()
                clock.advance(period)
                if clock.wall() >= next_upload:
                    res = await up.cycle()
                    assert res.error is None, res.error
                    uploads += 1
                    next_upload = clock.wall() + up.next_delay(res)
            loop.flush()  # the stop: the last bucket's records
            loop.camera.close()
            assert (await up.cycle()).error is None
            assert len(outbox) == 0
            return cloud.store.bodies(DEV_DEVICE), uploads
        finally:
            await up.close()
            outbox.close()
            await runner.cleanup()

    bodies, uploads = asyncio.run(main())
    assert uploads == 1 and len(released) > 40  # one per pseudonym per 5 s bucket, 8 buckets of a dozen walkers
    assert len({(r["pseudonym"], r["t"]) for r in released}) == len(released)
    assert [json.loads(b) for b in bodies] == released

"""The cloud inflates a batch no further than the raw body bound: a 30 kB gzip body that would inflate to
30 MB is refused with 413 after at most max_inflated_bytes (8 MiB) were inflated."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import time
import zlib
from pathlib import Path

import aiohttp

from cloud.app import DEV_DEVICE, Cloud, CloudConfig
from cloud.harness import device_setup
from firmware.config.sync import OutboxConfig
from firmware.sync.outbox import Outbox
from firmware.sync.uploader import Uploader
from hal.clock import FakeClock
from trust.keys import sign_headers
from trust.tls import PinnedConnector, client_context


def test_a_small_gzip_body_inflating_to_30_mb_is_refused_with_413(tmp_path: Path, monkeypatch) -> None:
    clock = FakeClock(start_wall=time.time())
    inflated: list[int] = []
    real = zlib.decompressobj

    class Counting:
        def __init__(self, *a: object) -> None:
            self._d = real(*a)  # type: ignore[arg-type]

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            out = self._d.decompress(data, max_length)
            inflated.append(len(out))
            return out

        def __getattr__(self, name: str) -> object:
            return getattr(self._d, name)

    async def main() -> tuple[int, dict]:
        cloud = Cloud(CloudConfig(data_dir=str(tmp_path / "cloud")), clock)
        runner, port = await cloud.start(port=0)
        dev = device_setup(cloud, tmp_path / "device", port)
        ob = Outbox(OutboxConfig(path=dev.outbox_path))
        up = Uploader(dev.uploader, dev.tls, ob, clock, random.Random(1))
        body = gzip.compress(json.dumps({"pad": "x" * 30_000_000}).encode(), 9)
        assert len(body) < 100_000
        h = sign_headers(up.keyring.current(clock.wall()), "POST", "/v1/batches", DEV_DEVICE, body, clock.wall())
        headers = {**h, "Content-Type": "application/json", "Content-Encoding": "gzip"}
        ctx = client_context(up.tls.ca_file, up.tls.cert_file, up.tls.key_file)
        monkeypatch.setattr("cloud.app.zlib.decompressobj", Counting)
        try:
            async with aiohttp.ClientSession(connector=PinnedConnector(ssl_context=ctx, pins=up.pins.pins)) as s:
                async with s.post(up.config.url + "/v1/batches", data=body, headers=headers) as r:
                    return r.status, json.loads(await r.read())
        finally:
            await up.close()
            ob.close()
            await runner.cleanup()
            cloud.store.close()

    status, answer = asyncio.run(main())
    assert status == 413 and answer["error"] == "too_large"
    assert sum(inflated) <= 8 * 1024 * 1024

"""Hostile device uploads against the cloud, over real mutual TLS, signed with the device's own key (so only
what the body holds is under test), on SQLite and PostgreSQL: numbers that are not numbers (NaN, infinities,
an integer of hundreds of digits), strings the database cannot hold (NUL, a lone surrogate), nesting past the
parser inside a record, a key given twice, overlong unicode. Each is a 4xx answer naming what is wrong, never
a 500, and the cloud stores the next honest batch."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from cloud.app import DEV_DEVICE, Cloud, CloudConfig
from cloud.harness import device_setup
from firmware.config.sync import OutboxConfig
from firmware.sensing.records import QuantizedTrack
from firmware.sync.outbox import Outbox
from firmware.sync.uploader import Uploader
from hal.clock import FakeClock
from trust.keys import sign_headers
from trust.tls import PinnedConnector, client_context


def _record() -> dict:
    return QuantizedTrack("00000000000000ab", 0, 1_700_000_001, (1, 1), 0.5, "M", 1, "east").to_json()


def _batch(records_text: str, seqs: str = "[1]", extra: str = "") -> bytes:
    return (f'{{"schema": "umbra.batch/1", "device_id": "{DEV_DEVICE}", "outbox_id": "00000000000000aa", '
            f'"batch_id": "{uuid.uuid4().hex}", "seq": 1, "seqs": {seqs}, "records": {records_text}{extra}}}'
            ).encode()


def _with(field: str, raw: str) -> str:
    """The honest record with `field`'s value written as the raw JSON text `raw`."""
    rec = _record()
    rec[field] = "@@"
    return "[" + json.dumps(rec).replace('"@@"', raw) + "]"


CASES = {
    "NaN count": _batch(_with("t", "NaN")),
    "infinite time": _batch(_with("t", "1e999")),
    "-Infinity grid": _batch(_with("grid_m", "-Infinity")),
    "Infinity grid": _batch(_with("grid_m", "Infinity")),
    "NaN grid": _batch(_with("grid_m", "NaN")),
    "an overflowing float grid": _batch(_with("grid_m", "1e400")),
    "an integer of 400 digits": _batch(_with("t", "1" * 400)),
    "an integer of 5000 digits": _batch(_with("t", "9" * 5000)),
    "a seq of 30 digits": _batch(f"[{json.dumps(_record())}]", seqs="[" + "9" * 30 + "]"),
    "NUL in a zone name": _batch(_with("zone", '"east\\u0000west"')),
    "lone surrogate in a zone name": _batch(_with("zone", '"\\ud800"')),
    "raw invalid UTF-8": _batch(_with("zone", '"@@@"')).replace(b"@@@", b"\xff"),
    "overlong zone name": _batch(_with("zone", json.dumps("\U0001F600" * 100_000))),
    "nested past the parser in a record": _batch(_with("cell", "[" * 50_000 + "]" * 50_000)),
    "nested 500 deep in a record": _batch(_with("cell", "[" * 500 + "]" * 500)),
    "a key given twice, the second another device": _batch(f"[{json.dumps(_record())}]",
                                                           extra=', "device_id": "someone-else"'),
    "records is null": _batch("null"),
    "a record that is a list": _batch("[[1, 2]]"),
    "a record that is a string": _batch('["x"]'),
    "an empty body": b"",
    "a JSON null": b"null",
    "a bare number": b"1e999",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hostile_upload_is_a_4xx_and_the_next_honest_batch_is_stored(tmp_path: Path, cloud_db: str,
                                                                      case: str) -> None:
    clock = FakeClock(start_wall=time.time())
    body = CASES[case]

    async def main() -> tuple[int, dict, int]:
        cloud = Cloud(CloudConfig(data_dir=str(tmp_path / "cloud"), database=cloud_db), clock)
        runner, port = await cloud.start(port=0)
        dev = device_setup(cloud, tmp_path / "device", port)
        ob = Outbox(OutboxConfig(path=dev.outbox_path))
        up = Uploader(dev.uploader, dev.tls, ob, clock, random.Random(1))
        ctx = client_context(up.tls.ca_file, up.tls.cert_file, up.tls.key_file)

        async def post(s: aiohttp.ClientSession, data: bytes) -> tuple[int, dict]:
            h = sign_headers(up.keyring.current(clock.wall()), "POST", "/v1/batches", DEV_DEVICE, data, clock.wall())
            async with s.post(up.config.url + "/v1/batches", data=data,
                              headers={**h, "Content-Type": "application/json"}) as r:
                return r.status, json.loads(await r.read())
        try:
            async with aiohttp.ClientSession(connector=PinnedConnector(ssl_context=ctx, pins=up.pins.pins)) as s:
                status, answer = await post(s, body)
                honest, _ = await post(s, _batch(f"[{json.dumps(_record())}]"))
                return status, answer, honest
        finally:
            await up.close()
            ob.close()
            await runner.cleanup()
            cloud.store.close()

    status, answer, honest = asyncio.run(main())
    assert 400 <= status < 500 and answer.get("error") and answer["error"] != "internal", (status, answer)
    assert honest == 200

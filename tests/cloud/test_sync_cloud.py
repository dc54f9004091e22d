"""Outbox -> uploader -> reference cloud over real mutual TLS on 127.0.0.1: exactly once, refusals, backoff,
Retry-After, key rotation and server-certificate rotation under load, certificate renewal, pin updates."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization

from cloud.app import DEV_DEVICE, Cloud, CloudConfig
from cloud.harness import device_setup
from firmware.config.sync import OutboxConfig
from firmware.errors import OutboxError
from firmware.sensing.records import QuantizedTrack
from firmware.sync.outbox import Outbox
from firmware.sync.uploader import Uploader, parse_retry_after
from hal.clock import FakeClock
from trust import pki
from trust.keys import KeyRing, sign_headers
from trust.tls import PinnedConnector, PinStore, client_context

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def track(i: int) -> dict:
    return QuantizedTrack(f"{i:016x}", 0, 1_700_000_000 + i, (i % 50, i % 7), 0.5, "M", i % 8, "east").to_json()


Body = Callable[[Cloud, Uploader, Outbox, FakeClock], Awaitable[Any]]


def with_cloud(tmp: Path, body: Body, *, cloud_cfg: dict | None = None, outbox_cfg: dict | None = None,
               **up: Any) -> Any:
    clock = FakeClock(start_wall=time.time())

    async def main() -> Any:
        cloud = Cloud(CloudConfig(data_dir=str(tmp / "cloud"), **(cloud_cfg or {})), clock)
        runner, port = await cloud.start(port=0)
        dev = device_setup(cloud, tmp / "device", port, **up)
        outbox = Outbox(OutboxConfig(path=dev.outbox_path, **(outbox_cfg or {})))
        uploader = Uploader(dev.uploader, dev.tls, outbox, clock, random.Random(7))
        try:
            return await body(cloud, uploader, outbox, clock)
        finally:
            await uploader.close()
            outbox.close()
            await runner.cleanup()
            cloud.store.close()

    return asyncio.run(main())


def test_records_arrive_exactly_once_even_when_the_ack_is_lost(tmp_path: Path, cloud_db: str) -> None:
    async def body(cloud: Cloud, up: Uploader, ob: Outbox, clock: FakeClock) -> None:
        sent = [track(i) for i in range(2500)]
        for k in range(0, 2500, 50):
            ob.enqueue(sent[k:k + 50])
        real_ack, lost = ob.ack, []

        def ack_lost_once(batch_id: str) -> int:  # the power goes after the cloud stored, before the ack
            if not lost:
                lost.append(batch_id)
                raise OutboxError("power cut")
            return real_ack(batch_id)

        ob.ack = ack_lost_once  # type: ignore[method-assign]
        with pytest.raises(OutboxError):
            await up.cycle()
        ob.ack = real_ack  # type: ignore[method-assign]
        res = await up.cycle()
        assert res.error is None and res.duplicates == 1 and len(ob) == 0
        assert cloud.store.count("records") == 2500 and cloud.store.count("duplicate_records") == 0
        assert [json.loads(b) for b in cloud.store.bodies(DEV_DEVICE)] == sent
        assert up.next_delay(res) == 30.0

    with_cloud(tmp_path, body, cloud_cfg={"database": cloud_db}, outbox_cfg={"batch_records": 1000})


async def _post(up: Uploader, body: bytes, headers: dict[str, str], path: str = "/v1/batches") -> tuple[int, dict]:
    ctx = client_context(up.tls.ca_file, up.tls.cert_file, up.tls.key_file)
    async with aiohttp.ClientSession(connector=PinnedConnector(ssl_context=ctx, pins=up.pins.pins)) as s:
        async with s.post(up.config.url + path, data=body, headers=headers,
                          timeout=aiohttp.ClientTimeout(total=10)) as r:
            return r.status, json.loads(await r.content.read(65536) or b"{}")


def _signed(up: Uploader, clock: FakeClock, doc: Any, raw: bytes | None = None) -> tuple[bytes, dict[str, str]]:
    body = gzip.compress(raw if raw is not None else json.dumps(doc).encode())
    h = sign_headers(up.keyring.current(clock.wall()), "POST", "/v1/batches", DEV_DEVICE, body, clock.wall())
    return body, {**h, "Content-Type": "application/json", "Content-Encoding": "gzip"}


def _doc(ob: Outbox, n: int = 3) -> dict:
    return {"schema": "umbra.batch/1", "device_id": DEV_DEVICE, "outbox_id": ob.outbox_id, "batch_id": "ab" * 16,
            "seq": 1, "seqs": list(range(1, n + 1)), "records": [track(i) for i in range(n)]}


def test_replayed_edited_malformed_and_oversized_batches_are_refused(tmp_path: Path, cloud_db: str) -> None:
    async def body(cloud: Cloud, up: Uploader, ob: Outbox, clock: FakeClock) -> dict:
        out = {}
        b, h = _signed(up, clock, _doc(ob))
        out["first"] = await _post(up, b, h)
        out["replay"] = await _post(up, b, h)
        b2, h2 = _signed(up, clock, _doc(ob))
        out["edited"] = await _post(up, b2[:-9] + gzip.compress(b"x")[-9:], h2)
        out["bad_json"] = await _post(up, *_signed(up, clock, None, raw=b"{not json"))
        bad = _doc(ob)
        bad["records"][1]["size"] = "XXL"
        bad["batch_id"] = "cd" * 16
        out["bad_record"] = await _post(up, *_signed(up, clock, bad))
        out["unsigned"] = await _post(up, b, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
        clock.advance(400)
        out["stale"] = await _post(up, b, h)
        big = json.dumps({"pad": "x" * (cloud.config.max_inflated_bytes + 10)}).encode()
        out["bomb"] = await _post(up, *_signed(up, clock, None, raw=big))
        out["deep"] = await _post(up, *_signed(up, clock, None, raw=b"[" * 100_000))  # past the parser's recursion
        out["records"] = cloud.store.count("records")
        return out

    got = with_cloud(tmp_path, body, cloud_cfg={"database": cloud_db})
    assert got["first"][0] == 200 and got["records"] == 3
    assert got["replay"] == (409, got["replay"][1]) and got["replay"][1]["error"] == "replay"
    assert got["edited"][0] == 401 and got["edited"][1]["error"] == "bad_signature"
    assert got["bad_json"][0] == 400
    assert got["bad_record"][0] == 422 and "records/1" in got["bad_record"][1]["detail"]
    assert got["unsigned"][0] == 401 and got["stale"][1]["error"] == "stale"
    assert got["bomb"][0] == 413
    assert got["deep"][0] == 400 and got["deep"][1]["error"] == "bad_json"


def test_outage_retry_after_backoff_and_drain_at_once_after(tmp_path: Path, cloud_db: str) -> None:
    async def body(cloud: Cloud, up: Uploader, ob: Outbox, clock: FakeClock) -> None:
        ob.enqueue([track(i) for i in range(120)])
        cloud.unavailable_until = clock.wall() + 600
        res = await up.cycle()
        assert res.error and res.retry_after == 600 and up.next_delay(res) >= 600
        assert cloud.store.count("records") == 0 and len(ob) == 120
        delays = []
        for _ in range(6):
            clock.advance(700)
            cloud.unavailable_until = clock.wall() + 1  # Retry-After 1: the backoff now dominates
            delays.append(up.next_delay(await up.cycle()))
        # grows: with equal jitter each delay is in [cap/2, cap] and the cap doubles
        assert all(b >= a for a, b in zip(delays, delays[1:], strict=False))
        assert delays[-1] <= up.config.backoff_max_s
        cloud.unavailable_until = 0
        res = await up.cycle()
        assert res.error is None and res.records == 120 and cloud.store.count("records") == 120

    with_cloud(tmp_path, body, cloud_cfg={"database": cloud_db}, outbox_cfg={"batch_records": 50})
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0) == 0.0
    assert parse_retry_after("120", 0) == 120.0 and parse_retry_after("soon", 0) is None


def test_keys_and_server_certificate_rotate_under_load(tmp_path: Path, cloud_db: str) -> None:
    async def body(cloud: Cloud, up: Uploader, ob: Outbox, clock: FakeClock) -> tuple[int, int, Any]:
        first_key = up.keyring.current(clock.wall())
        n = 0
        for step in range(60):
            ob.enqueue([track(n + j) for j in range(40)])
            n += 40
            res = await up.cycle()
            assert res.error is None, res.error
            if step == 30:  # the server moves to its backup-pinned key while records flow
                cloud.rotate_server_cert(cloud.pki.server_backup_key)
                await up.close()  # a fresh connection sees the new certificate
            clock.advance(30)
        assert not cloud.refusals and up.stats.failures == 0 and up.stats.pin_failures == 0
        assert pki.load_cert(cloud.pki.server_cert).public_key().public_bytes(
            *_SPKI) == pki.load_key(cloud.pki.server_backup_key).public_key().public_bytes(*_SPKI)
        old = await _post(up, *_signed_with(first_key, clock, ob))
        return n, up.stats.keys_received, old

    def _signed_with(key: Any, clock: FakeClock, ob: Outbox) -> tuple[bytes, dict]:
        b = gzip.compress(json.dumps(_doc(ob)).encode())
        h = sign_headers(key, "POST", "/v1/batches", DEV_DEVICE, b, clock.wall())
        return b, {**h, "Content-Type": "application/json", "Content-Encoding": "gzip"}

    cfg = {"key_lifetime_s": 400, "rotate_lead_s": 150, "database": cloud_db}
    (n, keys_received, old), = [with_cloud(tmp_path, body, cloud_cfg=cfg, key_lead_s=60)]
    store = __import__("cloud.store", fromlist=["Store"]).Store(cloud_db or tmp_path / "cloud" / "cloud.sqlite")
    assert store.count("records") == n == 2400 and store.count("duplicate_records") == 0
    assert keys_received >= 4  # 1800 s of flow with 400 s keys
    assert old[0] == 401 and old[1]["error"] == "key_expired"  # the first key, refused after its expiry


def test_device_certificate_renewal_and_pin_update(tmp_path: Path) -> None:
    async def body(cloud: Cloud, up: Uploader, ob: Outbox, clock: FakeClock) -> None:
        before = pki.load_cert(Path(up.tls.cert_file))
        old_key = Path(up.tls.key_file).read_bytes()
        ob.enqueue([track(1)])
        res = await up.cycle()  # renew_before is longer than the certificate's life: renews now
        assert res.error is None and up.stats.certs_renewed == 1
        after = pki.load_cert(Path(up.tls.cert_file))
        assert after.serial_number != before.serial_number and Path(up.tls.key_file).read_bytes() != old_key
        # a new pin set from the fleet root (new backup key) reaches the device on its next refresh
        root = pki.load_root_key(cloud.pki.root_key)
        pins = sorted(PinStore(cloud.pki.pins, pki.root_public_b64(root)).pins())
        msg = pki.sign_pin_update(root, [pins[0], pins[1], pki.spki_sha256(pki.make_key().public_key())], 2, 0)
        pki.write_atomic(cloud.pki.pins, pki.canonical(msg))
        clock.advance(up.config.pins_refresh_s + 1)
        up.config = type(up.config)(**{**{f: getattr(up.config, f) for f in up.config.__dataclass_fields__},
                                       "cert_renew_before_s": 0.0})
        ob.enqueue([track(2)])
        res = await up.cycle()
        assert res.error is None and up.pins.current.version == 2 and len(up.pins.pins()) == 3
        assert cloud.store.count("records") == 2

    with_cloud(tmp_path, body, cert_renew_before_s=200 * 86400.0)


def test_key_ring_survives_restart(tmp_path: Path) -> None:
    async def body(cloud: Cloud, up: Uploader, ob: Outbox, clock: FakeClock) -> list[str]:
        clock.advance(cloud.config.key_lifetime_s - 100)  # within the lead: next key comes with housekeeping
        ob.enqueue([track(1)])
        assert (await up.cycle()).error is None
        return [k.key_id for k in up.keyring.keys()]

    ids = with_cloud(tmp_path, body)
    assert len(ids) == 2 and [k.key_id for k in KeyRing(tmp_path / "device" / "keys.json").keys()] == ids


def test_an_expired_key_after_a_long_outage_is_replaced_over_mtls(tmp_path: Path) -> None:
    async def body(cloud: Cloud, up: Uploader, ob: Outbox, clock: FakeClock) -> None:
        ob.enqueue([track(i) for i in range(10)])
        clock.advance(3 * cloud.config.key_lifetime_s)  # offline for three key lifetimes
        res = await up.cycle()
        assert res.error is None and cloud.store.count("records") == 10 and up.stats.keys_received >= 1

    with_cloud(tmp_path, body)


def test_run_waits_the_period_and_honours_retry_after(tmp_path: Path) -> None:
    async def body(cloud: Cloud, up: Uploader, ob: Outbox, clock: FakeClock) -> list[float]:
        waits: list[float] = []
        stop = asyncio.Event()

        async def fake_sleep(s: float) -> None:  # no real sleeping: record the wait, move the clock
            waits.append(s)
            clock.advance(s)
            if len(waits) == 2:
                cloud.unavailable_until = clock.wall() + 300
                ob.enqueue([track(7)])
            if len(waits) == 3:
                cloud.unavailable_until = 0
            if len(waits) == 4:
                stop.set()
            await asyncio.sleep(0)

        up._sleep = fake_sleep
        ob.enqueue([track(1)])
        await asyncio.wait_for(up.run(stop), 20)
        assert cloud.store.count("records") == 2
        return waits

    waits = with_cloud(tmp_path, body)
    assert waits[:2] == [30.0, 30.0] and waits[2] >= 300 and waits[3] == 30.0


def test_uploader_refuses_a_fleet_signed_server_key_outside_the_pins(tmp_path: Path) -> None:
    async def body(cloud: Cloud, up: Uploader, ob: Outbox, clock: FakeClock) -> None:
        ob.enqueue([track(i) for i in range(5)])
        rogue = tmp_path / "rogue.key"
        rogue.write_bytes(pki.key_pem(pki.make_key()))
        cloud.rotate_server_cert(rogue)  # valid chain and name, key not pinned
        res = await up.cycle()
        assert res.error and "not in the pin set" in res.error and up.stats.pin_failures == 1
        assert len(ob) == 5 and cloud.store.count("records") == 0 and not cloud.refusals  # no request arrived
        cloud.rotate_server_cert(cloud.pki.server_backup_key)
        await up.close()
        assert (await up.cycle()).error is None and cloud.store.count("records") == 5

    with_cloud(tmp_path, body)


def test_track_records_of_both_versions_are_accepted_and_stored_as_sent(tmp_path: Path, cloud_db: str) -> None:
    """Issue 17: umbra.track/2 carries the bucket's confirmed crossings; a device not yet updated still sends
    umbra.track/1, and the cloud keeps taking it (records are stored whole, as sent: no column to migrate)."""
    old = {k: v for k, v in track(1).items() if k != "crossings"} | {"schema": "umbra.track/1"}
    new = QuantizedTrack("00000000000000aa", 0, 1_700_000_005, (3, 4), 0.5, "M", 2, None,
                         crossings=(("door", "+", 2), ("door", "-", 1))).to_json()

    async def body(cloud: Cloud, up: Uploader, ob: Outbox, clock: FakeClock) -> dict:
        out = {}
        doc = _doc(ob, 2) | {"records": [old, new]}
        out["both"] = await _post(up, *_signed(up, clock, doc))
        out["bodies"] = [json.loads(b) for b in cloud.store.bodies(DEV_DEVICE)]
        for k, (name, rec) in enumerate((("zero", new | {"crossings": [["door", "+", 0]]}),
                                         ("way", new | {"crossings": [["door", "in", 1]]}),
                                         ("old_with_crossings", old | {"crossings": []}),
                                         ("new_without", {x: v for x, v in new.items() if x != "crossings"}))):
            bad = _doc(ob, 1) | {"records": [rec], "batch_id": f"{k + 1:02x}" * 16}
            out[name] = await _post(up, *_signed(up, clock, bad))
        return out

    got = with_cloud(tmp_path, body, cloud_cfg={"database": cloud_db})
    assert got["both"][0] == 200 and got["bodies"] == [old, new]
    assert new["crossings"] == [["door", "+", 2], ["door", "-", 1]]
    for name in ("zero", "way", "old_with_crossings", "new_without"):
        assert got[name][0] == 422 and "records/0" in got[name][1]["detail"], name

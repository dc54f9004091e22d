"""Certificate times judged on the device's trusted time, not the system clock (OpenSSL's). A Raspberry Pi that
boots a day behind must still reach the cloud whose server certificate was issued in the last day, learn the
signed time there, and upload; a chain that expired before the last trusted time is refused while the time is
not trusted; once it is, a certificate not yet valid is refused. Real mutual TLS to the reference cloud on
127.0.0.1; the test machine's clock plays the device's, and the cloud's clock is the true one."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from cloud.app import DEV_DEVICE, Cloud, CloudConfig
from cloud.harness import device_setup
from firmware.config.sync import OutboxConfig
from firmware.sensing.records import QuantizedTrack
from firmware.sync.outbox import Outbox
from firmware.sync.uploader import CycleResult, Uploader
from hal.clock import FakeClock
from hal.trustedtime import FakeNtp, TrustedClock
from trust import pki
from trust.errors import CertTimeRefused, TlsError
from trust.tls import CertTimes, PinnedConnector, device_context

DAY = 86_400.0


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


def track(i: int) -> dict:
    return QuantizedTrack(f"{i:016x}", 0, 1_700_000_000 + i, (i % 50, i % 7), 0.5, "M", i % 8, "east").to_json()


def serve_certificate(cloud: Cloud, not_before: float, not_after: float) -> None:
    """The cloud serves a certificate for its pinned key, valid from `not_before` to `not_after` (Unix)."""
    p = cloud.pki
    key, ca_key, ca = pki.load_key(p.server_key), pki.load_key(p.ca_key), pki.load_cert(p.ca_cert)
    cert = pki.issue_cert(ca_key, ca, key.public_key(), "umbra-cloud", _utc(not_after) - dt.timedelta(days=1), 1,
                          server_names=cloud.config.hostnames, not_before=_utc(not_before))
    pki.write_atomic(p.server_cert, pki.cert_pem(cert))
    cloud.ssl.load_cert_chain(p.server_cert, p.server_key)


def run_device(tmp: Path, cloud_wall: float, device: TrustedClock, not_before: float, not_after: float,
               pki_made: float | None = None) -> tuple[list[CycleResult], Uploader, int, int]:
    """Two upload cycles of 30 records against the cloud serving the given certificate (its fleet PKI made at
    `pki_made`, else now); returns the cycle results, the uploader, the records the cloud stored and those left
    in the outbox."""
    true = FakeClock(start_wall=cloud_wall)
    if pki_made is not None:
        pki.ensure_dev_pki(tmp / "cloud" / "pki", CloudConfig(data_dir="-").hostnames, DEV_DEVICE, _utc(pki_made))

    async def main() -> tuple[list[CycleResult], Uploader, int, int]:
        cloud = Cloud(CloudConfig(data_dir=str(tmp / "cloud")), true)
        runner, port = await cloud.start(port=0)
        serve_certificate(cloud, not_before, not_after)
        dev = device_setup(cloud, tmp / "device", port)
        ob = Outbox(OutboxConfig(path=dev.outbox_path, batch_records=40))
        up = Uploader(dev.uploader, dev.tls, ob, device, random.Random(3))
        try:
            results = []
            for i in range(2):
                ob.enqueue([track(30 * i + j) for j in range(30)])
                results.append(await up.cycle())
            return results, up, cloud.store.count("records"), len(ob)
        finally:
            await up.close()
            ob.close()
            await runner.cleanup()
            cloud.store.close()

    return asyncio.run(main())


def test_a_device_a_day_behind_reaches_a_cloud_whose_certificate_is_a_day_old_or_less(tmp_path: Path) -> None:
    machine = time.time()  # the device's clock (and OpenSSL's): a day behind the true time
    true_now = machine + DAY
    device = TrustedClock(FakeClock(start_wall=machine), FakeNtp(synced=False), tmp_path / "trusted_time.json")
    # the server certificate was renewed an hour ago, true time: in the future by the device's clock
    results, up, stored, left = run_device(tmp_path, true_now, device, true_now - 3600, true_now + 30 * DAY)
    assert [r.error for r in results] == [None, None]
    assert stored == 60 and left == 0 and device.trusted  # learnt the time over that very connection
    assert abs(device.wall() - true_now) < 2.0 and up.stats.cert_time_failures == 0


def test_a_chain_expired_before_the_last_trusted_time_is_refused_and_counted(tmp_path: Path) -> None:
    machine = time.time()
    state = tmp_path / "trusted_time.json"
    state.write_text(json.dumps({"last_trusted_wall": machine}))  # the device knew the time once
    device = TrustedClock(FakeClock(start_wall=machine - 30 * DAY), FakeNtp(synced=False), state)  # rebooted old
    # a replayed server certificate (the pinned key) that expired ten days before the last trusted time
    results, up, stored, left = run_device(tmp_path, machine, device, machine - 40 * DAY, machine - 10 * DAY)
    assert all(r.error is not None and "cert-time" in r.error and "before the last trusted time" in r.error
               for r in results)
    assert up.stats.cert_time_failures == 2 and up.stats.errors == {"cert-time": 2}
    assert stored == 0 and left == 60 and not device.trusted  # nothing lost, no time learnt from it


def test_once_trusted_a_certificate_not_yet_valid_is_refused(tmp_path: Path) -> None:
    machine = time.time()
    device = TrustedClock(FakeClock(start_wall=machine), FakeNtp(synced=False), tmp_path / "trusted_time.json")
    # valid from an hour after the true time: accepted only to learn the time, then refused at trusted time
    results, up, stored, left = run_device(tmp_path, machine, device, machine + 3600, machine + 30 * DAY)
    assert device.trusted and stored == 0 and left == 60
    assert all(r.error is not None and "cert-time" in r.error and "not valid before" in r.error for r in results)
    assert up.stats.cert_time_failures == 2


def test_the_system_clock_does_not_judge_a_trusted_device(tmp_path: Path) -> None:
    """Trusted time a month behind the system clock (say the system clock was stepped wrong after NTP): a
    certificate that the system clock calls expired is valid at the device's time, and is used."""
    machine = time.time()
    trusted = TrustedClock.always_trusted(FakeClock(start_wall=machine - 30 * DAY))
    results, _, stored, _ = run_device(tmp_path, machine - 30 * DAY, trusted, machine - 40 * DAY, machine - 10 * DAY,
                                       pki_made=machine - 50 * DAY)
    assert [r.error for r in results] == [None, None] and stored == 60


class Time:
    def __init__(self, wall: float, trusted: bool, floor: float = 0.0) -> None:
        self._wall, self.trusted, self.floor = wall, trusted, floor

    def wall(self) -> float:
        return self._wall


def test_the_checked_chain_includes_the_fleet_ca(tmp_path: Path) -> None:
    p = pki.ensure_dev_pki(tmp_path / "pki")
    leaf, ca = pki.load_cert(p.server_cert), pki.load_cert(p.ca_cert)
    times = CertTimes(p.ca_cert, p.device_cert, Time(time.time(), True))
    assert [c.subject for c in times.chain(leaf)] == [leaf.subject, ca.subject]
    # a leaf valid from ten days ago, signed by a CA made five minutes ago: a day ago, only the CA is not valid
    early = pki.issue_cert(pki.load_key(p.ca_key), ca, pki.load_key(p.server_key).public_key(), "umbra-cloud",
                           pki.utcnow(), 30, server_names=("localhost",),
                           not_before=pki.utcnow() - dt.timedelta(days=10))
    times.time = Time(time.time() - DAY, True)
    with pytest.raises(CertTimeRefused, match="Umbra development fleet CA.* not valid before"):
        times.check(early.public_bytes(Encoding.DER))
    times.time = Time(time.time(), True)
    times.check(early.public_bytes(Encoding.DER))
    assert times.refused == 1


def test_untrusted_with_no_floor_a_chain_dead_before_the_device_was_issued_is_refused(tmp_path: Path) -> None:
    """A first boot (no last trusted time persisted) at a clock of 1970: the device's own certificate still
    says the true time is after its issue, so a replayed certificate that expired before that is refused."""
    p = pki.ensure_dev_pki(tmp_path / "pki")
    old = pki.issue_cert(pki.load_key(p.ca_key), pki.load_cert(p.ca_cert), pki.load_key(p.server_key).public_key(),
                         "umbra-cloud", pki.utcnow() - dt.timedelta(days=100), 30, server_names=("localhost",))
    times = CertTimes(p.ca_cert, p.device_cert, Time(0.0, False, floor=0.0))
    with pytest.raises(CertTimeRefused, match="before the last trusted time"):
        times.check(old.public_bytes(Encoding.DER))
    times.check(pki.load_cert(p.server_cert).public_bytes(Encoding.DER))  # the current one is fine
    assert times.refused == 1


def test_a_context_that_skips_time_checks_is_refused_without_a_time_check(tmp_path: Path) -> None:
    p = pki.ensure_dev_pki(tmp_path / "pki")
    ctx, times = device_context(p.ca_cert, p.device_cert, p.device_key, "1.3", Time(time.time(), True))
    with pytest.raises(TlsError, match="CertTimes"):
        PinnedConnector(ssl_context=ctx, pins=frozenset)
    assert times.anchors

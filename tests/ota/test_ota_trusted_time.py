"""OTA checks on the device's trusted time. While wall time is not trusted a check is held (reported, counted)
and goes ahead by itself at the next check once it is; when trusted, python-tuf judges metadata expiry at the
trusted time, not at the system clock. A real TUF repository with real signatures, served by the reference
cloud over mutual TLS on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import time
from types import SimpleNamespace

import pytest

from bench.lib.ota_site import Site
from firmware.schemas import validate
from hal.clock import FakeClock
from hal.trustedtime import FakeNtp, TrustedClock
from ota.agent import check_and_install, make_client
from ota.client import OtaClient, judge_expiry_at
from ota.config import OtaConfig
from ota.errors import OtaError, Refused
from trust import pki
from trust.tls import TlsConfig

DAY = 86_400.0


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    s.publish("1.1.0")
    yield s
    s.close()


def client_at(site: Site, clock: TrustedClock | None) -> OtaClient:
    c = site.client()
    return OtaClient(c.config, c.dir, site.root, site.fetcher, site.boot, clock)


def test_a_check_is_held_while_time_is_untrusted_and_goes_ahead_once_trusted(site, tmp_path):
    ntp = FakeNtp(synced=False)
    clock = TrustedClock(FakeClock(start_wall=time.time()), ntp, tmp_path / "trusted_time.json")
    client = client_at(site, clock)
    reports: list[dict] = []
    assert check_and_install(client, reports.append) is None
    assert client.held == 1 and site.fetcher.connections == 0  # not even asked: nothing judged on a wrong clock
    assert reports[0]["result"] == "held" and "time untrusted" in reports[0]["reason"]
    validate(reports[0])
    assert site.boot.state()["trying"] is None
    ntp.is_synced = True  # NTP answers: the next scheduled check goes ahead by itself
    assert check_and_install(client, reports.append) == "1.1.0"
    assert reports[-1]["result"] == "installed" and client.held == 1 and site.boot.state()["trying"] == "b"


def test_metadata_expired_by_the_system_clock_is_valid_at_the_trusted_time(site):
    """The system clock was stepped ahead after NTP (trusted time keeps to the monotonic clock): a timestamp
    that expired by the system clock two days ago is still valid at the trusted time."""
    site.repo.now = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    site.repo.refresh_timestamp(days=1)  # expires two days ago by the system clock
    with pytest.raises(Refused, match="Expired"):
        client_at(site, None).check()  # the system clock judges: expired
    trusted = TrustedClock.always_trusted(FakeClock(start_wall=time.time() - 2.5 * DAY))
    update = client_at(site, trusted).check()
    assert update is not None and update.version == "1.1.0"


def test_metadata_valid_by_the_system_clock_is_expired_at_the_trusted_time(site):
    """The system clock is behind (a Pi that booted old) while the trusted time says three days later: a frozen
    mirror's timestamp, valid by the system clock, is expired at the trusted time and refused."""
    assert client_at(site, None).check() is not None  # by the system clock the timestamp (1 day) is valid
    trusted = TrustedClock.always_trusted(FakeClock(start_wall=time.time() + 3 * DAY))
    with pytest.raises(Refused, match="Expired"):
        client_at(site, trusted).check()
    assert site.boot.state()["trying"] is None


def test_the_running_sensors_client_judges_certificates_on_its_clock_too(site, tmp_path):
    """make_client with the sensor's clock: a device context (OpenSSL's time check off, CertTimes on), and once
    trusted the check goes through the real fleet TLS and installs."""
    p = site.cloud.cloud.pki
    (tmp_path / "root.json").write_bytes(site.root)
    tls = TlsConfig(ca_file=str(p.ca_cert), cert_file=str(p.device_cert), key_file=str(p.device_key),
                    pins_file=str(p.pins), fleet_root_public_key=pki.root_public_b64(pki.load_root_key(p.root_key)))
    cfg = OtaConfig(enabled=True, base_url=f"https://localhost:{site.cloud.port}/ota", state_dir=str(tmp_path / "s"),
                    trusted_root=str(tmp_path / "root.json"), boot=f"directory:{tmp_path / 'boot'}")
    early = TrustedClock.always_trusted(FakeClock(start_wall=time.time() - DAY))  # before the fleet CA existed
    client = make_client(cfg, tls, site.boot, "dev-1", "1.0.0", early)
    assert client.fetcher.cert_times is not None  # type: ignore[attr-defined]
    with pytest.raises(Refused, match="cert-time: certificate .* not valid before"):
        client.check()
    client = make_client(cfg, tls, site.boot, "dev-1", "1.0.0", TrustedClock.always_trusted(FakeClock(time.time())))
    assert client.check() is not None


def test_the_reference_time_adapter_refuses_a_python_tuf_without_it():
    with pytest.raises(OtaError, match="reference_time"):
        judge_expiry_at(SimpleNamespace(_trusted_set=SimpleNamespace()), 0.0)  # type: ignore[arg-type]

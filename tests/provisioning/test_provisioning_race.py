"""Stations that race or are fooled: 100 attempts for one hardware id, four ports at a time over real
pseudo-terminals, yield exactly one certificate; a device id already given is refused for another hardware
id; a device refuses a certificate for its own key that names another device."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from provisioning.agent import DeviceAgent
from provisioning.errors import FrameError, ProvisioningError, Refusal
from provisioning.fakepty import FakeDevice
from provisioning.framing import decode
from provisioning.protocol import pack, unpack
from provisioning.station import FileCA, Station
from trust import pki

TESTS = {"camera": lambda: {"frames": 5}, "storage": lambda: {"free_mb": 1200}}


def _agent(folder: Path, ca: FileCA, hw: str) -> DeviceAgent:
    return DeviceAgent(folder, hardware_id=hw, model="umbra-pi4", firmware="0.1.0", trusted_ca_pem=ca.cert_pem(),
                       self_tests=TESTS)


def test_100_attempts_for_one_hardware_id_on_4_ports_yield_one_certificate(tmp_path: Path, factory) -> None:
    ca, fleet, log = factory
    station = Station(ca, log, fleet, timeout_s=10.0)
    outcomes: list[object] = []
    for round_ in range(25):  # four devices claiming one hardware id, on four ports at once
        devices = [FakeDevice(_agent(tmp_path / f"d{round_}-{p}", ca, "00decade")) for p in range(4)]
        try:
            with ThreadPoolExecutor(4) as pool:
                futures = [pool.submit(station.provision, d.port) for d in devices]
            for f in futures:
                try:
                    outcomes.append(f.result())
                except ProvisioningError as e:
                    outcomes.append(e.code)
        finally:
            for d in devices:
                d.close()
    assert len(outcomes) == 100
    assert ca.issued == 1 and log.count_issued() == 1
    done = [o for o in outcomes if not isinstance(o, str)]
    assert len(done) == 1
    assert set(o for o in outcomes if isinstance(o, str)) == {"already_issued"}


def test_a_device_id_already_given_is_refused_for_another_hardware_id(tmp_path: Path, factory) -> None:
    ca, fleet, log = factory
    station = Station(ca, log, fleet)
    first = FakeDevice(_agent(tmp_path / "a", ca, "0000aaaa"))
    second = FakeDevice(_agent(tmp_path / "b", ca, "0000bbbb"))
    try:
        assert station.provision(first.port, device_id="shop-7").device_id == "shop-7"
        with pytest.raises(ProvisioningError) as e:
            station.provision(second.port, device_id="shop-7")
    finally:
        first.close()
        second.close()
    assert e.value.code == "device_id_taken"
    assert ca.issued == 1


def test_the_device_refuses_a_certificate_for_its_own_key_naming_another_device(tmp_path: Path, factory) -> None:
    ca = factory[0]
    agent = _agent(tmp_path / "dev", ca, "0000cccc")

    def call(seq: int, op: str, **args: object) -> dict:
        return unpack(decode(agent.handle(decode(pack({"v": 1, "seq": seq, "op": op, "args": args})[1:-1]))[1:-1]))

    csr = x509.load_pem_x509_csr(call(1, "generate_key", device_id="umbra-0000cccc")["result"]["csr"])
    now = dt.datetime.now(dt.UTC)
    forged = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "umbra-someone-else")]))
              .issuer_name(ca.cert.subject).public_key(csr.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30)).sign(ca.key, hashes.SHA256()))
    answer = call(2, "install_chain", chain=[pki.cert_pem(forged), ca.cert_pem()])
    assert answer["ok"] is False and answer["error"]["code"] == "bad_chain"
    assert "umbra-someone-else" in answer["error"]["message"]
    assert agent.state["state"] == "keyed"


def test_one_exception_family() -> None:
    assert issubclass(FrameError, ProvisioningError) and issubclass(Refusal, ProvisioningError)
    assert issubclass(FrameError, ValueError)  # as before, for callers that caught ValueError

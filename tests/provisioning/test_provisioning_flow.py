"""Factory provisioning over real pseudo-terminals with real pyserial: the whole flow, the device then talking
to the reference cloud with what it was given, cable pulls at every step, and the key that never leaves."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from cloud.harness import CloudThread
from firmware.config.sync import OutboxConfig, UploaderConfig
from firmware.sync.outbox import Outbox
from firmware.sync.uploader import Uploader
from hal.clock import SystemClock
from provisioning.agent import DeviceAgent
from provisioning.fakepty import FakeDevice
from provisioning.protocol import ProvisioningError
from provisioning.station import STEPS, FileCA, FleetSettings, Station, StationLog
from trust import pki
from trust.keys import BatchKey
from trust.tls import TlsConfig


def fleet_for(root_key, pins_message, url="https://localhost:8443", keys=None) -> FleetSettings:
    return FleetSettings(url, pins_message, pki.root_public_b64(root_key), b'{"signed": {"_type": "root"}}',
                         keys or (lambda device_id: BatchKey.generate(time.time(), 86_400).to_json()))


@pytest.fixture
def factory(tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    ca = FileCA.create(tmp_path / "ca")
    root = Ed25519PrivateKey.generate()
    pins = pki.sign_pin_update(root, ["A" * 43 + "=", "B" * 43 + "="], 1, int(time.time()))
    return ca, fleet_for(root, pins), StationLog(tmp_path / "station.sqlite")


def agent(tmp_path, ca, hw="00c0ffee", **kw) -> DeviceAgent:
    tests = {"camera": lambda: {"frames": 5}, "detector": lambda: {"backend": "cpu"},
             "clock": lambda: {"drift_ppm": 3}, "storage": lambda: {"free_mb": 1200}}
    return DeviceAgent(tmp_path / f"device-{hw}", hardware_id=hw, model="umbra-pi4", firmware="0.1.0",
                       trusted_ca_pem=ca.cert_pem(), self_tests=tests, **kw)


def test_a_blank_device_is_provisioned_locked_and_logged(tmp_path, factory):
    ca, fleet, log = factory
    dev = FakeDevice(agent(tmp_path, ca))
    steps = []
    try:
        rec = Station(ca, log, fleet, progress=lambda p, s, i, n: steps.append(s)).provision(dev.port)
    finally:
        dev.close()
    assert steps == list(STEPS)
    assert rec.status == "done" and rec.device_id == "umbra-00c0ffee" and rec.tests["camera"]["ok"]
    assert dev.agent.state["state"] == "locked"
    cert = pki.load_cert(dev.agent.dir / "device.pem")
    cert.verify_directly_issued_by(ca.cert)  # the chain verifies against the manufacturing CA
    assert format(cert.serial_number, "x") == rec.serial
    assert oct((dev.agent.dir / "device.key").stat().st_mode & 0o777) == "0o600"
    # the station refuses nothing it already did, and a locked device answers hello only
    again = FakeDevice(dev.agent)
    try:
        assert Station(ca, log, fleet).provision(again.port).serial == rec.serial
    finally:
        again.close()
    assert ca.issued == 1


def test_the_provisioned_device_reaches_the_reference_cloud_with_its_new_identity(tmp_path):
    clock = SystemClock()
    cloud = CloudThread(tmp_path / "cloud", clock)
    try:
        p = cloud.cloud.pki
        ca = FileCA(p.ca_key, p.ca_cert)  # the fleet CA signs at the factory
        root = pki.load_root_key(p.root_key)
        fleet = fleet_for(root, json.loads(p.pins.read_text()), f"https://localhost:{cloud.port}",
                          keys=lambda device_id: cloud.cloud.issue_key(device_id).to_json())
        dev = FakeDevice(agent(tmp_path, ca, hw="beef0001"))
        try:
            rec = Station(ca, StationLog(tmp_path / "log.sqlite"), fleet).provision(dev.port)
        finally:
            dev.close()
        d = dev.agent.dir
        tls = TlsConfig(ca_file=str(d / "ca.pem"), cert_file=str(d / "device.pem"), key_file=str(d / "device.key"),
                        pins_file=str(d / "pins.json"), fleet_root_public_key=fleet.fleet_root_public_key)
        cfg = json.loads((d / "config.json").read_text())
        up_cfg = UploaderConfig(url=cfg["cloud_url"], device_id=cfg["device_id"], keyring_file=str(d / "keys.json"))
        outbox = Outbox(OutboxConfig(path=str(tmp_path / "outbox.sqlite")))
        outbox.enqueue([{"schema": "umbra.status/1", "t": int(time.time()), "firmware": "0.1.0",
                         "profile": "aggregates", "uptime_s": 1.0, "outbox_records": 0, "dropped": {}}])

        async def once():
            up = Uploader(up_cfg, tls, outbox, clock, random.Random(0))
            try:
                return await up.cycle()
            finally:
                await up.close()

        res = asyncio.run(once())
        outbox.close()
        assert res.error is None and res.records == 1
        held = cloud.cloud.store.bodies(rec.device_id)
        assert len(held) == 1 and json.loads(held[0])["schema"] == "umbra.status/1"
    finally:
        cloud.close()


@pytest.mark.parametrize("cut", range(len(STEPS) - 1))  # 7 requests: cut after 0..6 answers
def test_a_cable_pulled_at_any_step_then_a_rerun_finishes_with_one_certificate(tmp_path, factory, cut):
    ca, fleet, log = factory
    first = FakeDevice(agent(tmp_path, ca), cut_after_requests=cut)
    station = Station(ca, log, fleet, timeout_s=0.3)
    with pytest.raises((ProvisioningError, Exception)):
        station.provision(first.port)
    first.close()
    rebooted = agent(tmp_path, ca)  # the device restarts from what it wrote to disk
    second = FakeDevice(rebooted)
    try:
        rec = station.provision(second.port)
    finally:
        second.close()
    assert rec.status == "done" and rebooted.state["state"] == "locked"
    assert ca.issued == 1 and log.count_issued() == 1


def test_the_private_key_never_crosses_the_line(tmp_path, factory):
    ca, fleet, log = factory
    dev = FakeDevice(agent(tmp_path, ca))
    try:
        Station(ca, log, fleet).provision(dev.port)
    finally:
        dev.close()
    wire = b"".join(data for _, data in dev.wire)
    assert len(wire) > 1000
    key = pki.load_key(dev.agent.dir / "device.key")
    secrets_ = [
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()).split(b"\n")[1],
        key.private_numbers().private_value.to_bytes(32, "big"),
    ]
    for s in secrets_:
        assert s not in wire
        assert s[:16] not in wire  # not even a piece of it
    # the public half did cross (in the CSR): the search would have found a key had it been sent
    pub = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    assert pub[1:17] in wire or b"BEGIN CERTIFICATE REQUEST" in wire


def test_wrong_ca_and_other_key_certificates_are_refused(tmp_path, factory):
    ca, fleet, log = factory
    ag = agent(tmp_path, ca)
    csr = ag._op_generate_key({"device_id": "umbra-x"})["csr"]
    rogue = FileCA.create(tmp_path / "rogue")
    with pytest.raises(ProvisioningError, match="bad_chain"):
        ag._op_install_chain({"chain": [rogue.sign(csr, "umbra-x"), rogue.cert_pem()]})
    other_key = pki.make_key()
    other_csr = pki.make_csr(other_key, "umbra-x").public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ProvisioningError, match="another key"):
        ag._op_install_chain({"chain": [ca.sign(other_csr, "umbra-x"), ca.cert_pem()]})
    assert ag.state["state"] == "keyed"


def test_a_second_identity_for_one_hardware_id_needs_force(tmp_path, factory):
    ca, fleet, log = factory
    dev = FakeDevice(agent(tmp_path, ca, hw="aa"))
    Station(ca, log, fleet).provision(dev.port)
    dev.close()
    swapped = FakeDevice(DeviceAgent(Path(tmp_path / "other-board"), hardware_id="aa", model="umbra-pi4",
                                     firmware="0.1.0", trusted_ca_pem=ca.cert_pem()))
    try:
        with pytest.raises(ProvisioningError, match="already_issued"):
            Station(ca, log, fleet).provision(swapped.port)
        assert ca.issued == 1
        rec = Station(ca, log, fleet).provision(swapped.port, force=True)
        assert rec.status == "done" and ca.issued == 2
    finally:
        swapped.close()

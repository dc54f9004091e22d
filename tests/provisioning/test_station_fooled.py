"""A station fooled by the device it talks to: a device (real agent, real pseudo-terminal, real pyserial)
whose answers are of the wrong shape, name another identity, overlong or not a name, a CSR that is garbage,
for another name or another kind of key, a self-test report that is not one. Each provisioning ends in one
ProvisioningError with a code (what the station prints per port), never another exception, and nothing the
device did not earn is recorded: no certificate is issued before the device's hello and CSR are sound."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from provisioning.agent import DeviceAgent
from provisioning.errors import ProvisioningError
from provisioning.fakepty import FakeDevice
from provisioning.station import Station
from trust import pki

TESTS = {"camera": lambda: {"frames": 5}}
Lie = Callable[[DeviceAgent, dict[str, Any]], dict[str, Any]]


def _rsa_csr(name: str) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return pki.make_csr(key, name).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def _hello(**over: Any) -> Lie:
    def lie(agent: DeviceAgent, args: dict[str, Any]) -> dict[str, Any]:
        real = DeviceAgent._op_hello(agent, args)
        return {k: v for k, v in {**real, **over}.items() if v is not DROP}
    return lie


DROP = object()
LIES: dict[tuple[str, str], Lie] = {
    ("hello", "no hardware id"): _hello(hardware_id=DROP),
    ("hello", "hardware id a map"): _hello(hardware_id={"a": 1}),
    ("hello", "hardware id a number"): _hello(hardware_id=12345),
    ("hello", "hardware id of 5000 characters"): _hello(hardware_id="a" * 5000),
    ("hello", "hardware id climbing folders"): _hello(hardware_id="../../etc/passwd"),
    ("hello", "hardware id with a NUL"): _hello(hardware_id="hw\x00evil"),
    ("hello", "no state"): _hello(state=DROP),
    ("hello", "state a list"): _hello(state=["locked"]),
    ("hello", "no firmware"): _hello(firmware=DROP),
    ("generate_key", "no csr"): lambda a, args: {},
    ("generate_key", "csr a string"): lambda a, args: {"csr": "-----BEGIN CERTIFICATE REQUEST-----"},
    ("generate_key", "csr garbage bytes"): lambda a, args: {"csr": b"\x00" * 300},
    ("generate_key", "csr for another device"): lambda a, args: {**DeviceAgent._op_generate_key(a, args),
                                                                 "csr": a.keys.csr("umbra-someone-else")},
    ("generate_key", "csr with an RSA key"): lambda a, args: {"csr": _rsa_csr(args["device_id"])},
    ("install_chain", "serial a map"): lambda a, args: {**DeviceAgent._op_install_chain(a, args), "serial": {"x": 1}},
    ("install_chain", "no serial"): lambda a, args: (DeviceAgent._op_install_chain(a, args), {})[1],
    ("verify", "signature a string"): lambda a, args: {"signature": "x"},
    ("verify", "no signature"): lambda a, args: {},
    ("self_test", "report a list of strings"): lambda a, args: {"camera": "ok"},
    ("self_test", "report entries numbers"): lambda a, args: {"camera": 1, "storage": None},
}


@pytest.mark.parametrize("lie", sorted(LIES), ids=lambda k: f"{k[0]}: {k[1]}")
def test_a_device_that_lies_ends_in_one_provisioning_error(tmp_path: Path, factory, lie: tuple[str, str]) -> None:
    ca, fleet, log = factory
    op, _ = lie
    agent = DeviceAgent(tmp_path / "dev", hardware_id="0badf00d", model="umbra-pi4", firmware="0.1.0",
                        trusted_ca_pem=ca.cert_pem(), self_tests=TESTS)
    told = LIES[lie]
    setattr(agent, f"_op_{op}", lambda args: told(agent, args))
    dev = FakeDevice(agent)
    try:
        with pytest.raises(ProvisioningError) as e:
            Station(ca, log, fleet, timeout_s=2.0).provision(dev.port)
    finally:
        dev.close()
    assert e.value.code and "\n" not in str(e.value)
    if op in ("hello", "generate_key"):
        assert log.count_issued() == 0 and ca.issued == 0
    assert log.db.execute("SELECT COUNT(*) FROM devices WHERE status = 'done'").fetchone()[0] == 0

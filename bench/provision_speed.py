"""Provisioning speed: one device from blank to locked over a pseudo-terminal with real pyserial, key
generation included, and several devices on several ports at once. A pty has no baud rate, so the time a
real 115,200 baud UART adds is computed from the bytes on the wire (10 bits a byte) and added; both printed.

`python -m bench.provision_speed [--ports 4]`"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioning.agent import DeviceAgent
from provisioning.fakepty import FakeDevice
from provisioning.station import FileCA, FleetSettings, Station, StationLog, wire_time_s
from trust import pki
from trust.keys import BatchKey

BAUD = 115_200


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.provision_speed", description=__doc__)
    ap.add_argument("--ports", type=int, default=4)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="umbra-provision-speed-"))
    ca = FileCA.create(tmp / "ca")
    root = Ed25519PrivateKey.generate()
    fleet = FleetSettings("https://cloud.example:8443",
                          pki.sign_pin_update(root, ["A" * 43 + "=", "B" * 43 + "="], 1, int(time.time())),
                          pki.root_public_b64(root), b'{"signed": {"_type": "root"}}',
                          lambda d: BatchKey.generate(time.time(), 86_400).to_json())
    station = Station(ca, StationLog(tmp / "log.sqlite"), fleet, baudrate=BAUD)

    def device(i: int) -> FakeDevice:
        return FakeDevice(DeviceAgent(tmp / f"dev{i}", hardware_id=f"speed{i:04d}", model="umbra-pi4",
                                      firmware="0.1.0", trusted_ca_pem=ca.cert_pem(),
                                      self_tests={"clock": lambda: {"ok_ms": 1}}))

    one = device(0)
    wire = [0]
    t0 = time.perf_counter()
    station.provision(one.port, on_bytes=lambda way, data: wire.__setitem__(0, wire[0] + len(data)))
    elapsed = time.perf_counter() - t0
    one.close()
    uart = wire_time_s(wire[0], BAUD)
    print(f"one device: {wire[0]} bytes on the wire, {elapsed:.2f} s over the pty (key generation included) "
          f"+ {uart:.2f} s at {BAUD} baud = {elapsed + uart:.2f} s (goal <= 3 s)")
    many = [device(i) for i in range(1, args.ports + 1)]
    t0 = time.perf_counter()
    results = station.provision_many([d.port for d in many])
    elapsed = time.perf_counter() - t0
    for d in many:
        d.close()
    ok = sum(not isinstance(r, Exception) for r in results.values())
    print(f"{args.ports} ports at once: {ok} provisioned in {elapsed:.2f} s over ptys "
          f"(+ {uart:.2f} s of UART time each, in parallel on separate cables)")
    return 0 if ok == args.ports else 1


if __name__ == "__main__":
    raise SystemExit(main())

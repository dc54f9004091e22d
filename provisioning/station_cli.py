"""`umbra provision ...`: the factory station's command line.

    umbra provision init-ca --dir ca/                       # a file-based manufacturing CA (HSM later)
    umbra provision run --ca ca/ --fleet fleet.json --log station.sqlite --port /dev/ttyUSB0 [--port ...]
    umbra provision run ... --fake 4                        # four fake devices behind pseudo-terminals
    umbra provision show --log station.sqlite               # the devices this station has provisioned
    umbra provision agent --port /dev/serial0 --ca mfg-ca.pem   # on the device, in provisioning mode

fleet.json: {"cloud_url": "https://...", "pins": <signed pin message>, "fleet_root_public_key": "<b64>",
"ota_root": "<path of the TUF root.json>", "cloud_data": "<reference cloud folder>" (bench only: first
batch keys are registered there; otherwise they are appended to "keys_out" for ops to load into the cloud)}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cloud.store import Store
from provisioning.agent import DeviceAgent
from provisioning.device import serve
from provisioning.fakepty import FakeDevice
from provisioning.station import FileCA, FleetSettings, Station, StationLog
from trust.keys import BatchKey

HELP = "factory provisioning station"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="provision_command", required=True)
    init = sub.add_parser("init-ca", help="create a file-based manufacturing CA")
    init.add_argument("--dir", type=Path, required=True)
    init.set_defaults(func=_init_ca)
    run = sub.add_parser("run", help="provision the devices on these ports")
    run.add_argument("--ca", type=Path, required=True, help="folder with ca.key and ca.pem")
    run.add_argument("--fleet", type=Path, required=True, help="fleet settings (JSON)")
    run.add_argument("--log", type=Path, default=Path("station.sqlite"))
    run.add_argument("--port", action="append", default=[], help="a serial port (repeat for several)")
    run.add_argument("--fake", type=int, default=0, help="also provision N fake devices behind ptys")
    run.add_argument("--force", action="store_true", help="issue again for a hardware id already issued")
    run.add_argument("--baud", type=int, default=115_200)
    run.set_defaults(func=_run)
    agent = sub.add_parser("agent", help="(on the device) answer a station on the serial console")
    agent.add_argument("--port", default="/dev/serial0")
    agent.add_argument("--state", type=Path, default=Path("/var/lib/umbra/provisioning"))
    agent.add_argument("--ca", type=Path, required=True, help="the manufacturing CA certificate (PEM)")
    agent.set_defaults(func=lambda a: _agent(a))
    show = sub.add_parser("show", help="list provisioned devices")
    show.add_argument("--log", type=Path, default=Path("station.sqlite"))
    show.set_defaults(func=_show)


def _init_ca(args: argparse.Namespace) -> int:
    if (args.dir / "ca.key").exists():
        print(f"{args.dir}/ca.key exists; refusing to replace a CA", file=sys.stderr)
        return 2
    args.dir.mkdir(parents=True, exist_ok=True)
    FileCA.create(args.dir)
    print(f"manufacturing CA written to {args.dir}/ca.pem (key: {args.dir}/ca.key, owner-only)")
    return 0


def load_fleet(path: Path) -> FleetSettings:

    doc = json.loads(path.read_text())
    ota_root = Path(doc["ota_root"]).read_bytes() if doc.get("ota_root") else b"{}"

    def key_for(device_id: str) -> dict[str, Any]:
        if doc.get("cloud_data"):

            key = BatchKey.generate(time.time(), 30 * 86_400)
            Store(Path(doc["cloud_data"]) / "cloud.sqlite").add_key(device_id, key)
        else:
            key = BatchKey.generate(time.time(), 30 * 86_400)
            with open(doc.get("keys_out", "issued-keys.jsonl"), "a") as f:
                f.write(json.dumps({"device_id": device_id, **key.to_json()}) + "\n")
        return key.to_json()

    return FleetSettings(doc["cloud_url"], doc["pins"], doc["fleet_root_public_key"], ota_root, key_for)


def _run(args: argparse.Namespace) -> int:
    ca = FileCA(args.ca / "ca.key", args.ca / "ca.pem")
    fleet = load_fleet(args.fleet)
    fakes = [_fake(ca, i) for i in range(args.fake)]
    ports = list(args.port) + [f.port for f in fakes]
    if not ports:
        print("no ports: give --port (repeatable) or --fake N", file=sys.stderr)
        return 2

    def progress(port: str, step: str, i: int, n: int) -> None:
        print(f"  {port}: [{i}/{n}] {step}", flush=True)

    station = Station(ca, StationLog(args.log), fleet, baudrate=args.baud, progress=progress)
    t0 = time.perf_counter()
    results = station.provision_many(ports, force=args.force)
    for f in fakes:
        f.close()
    failed = 0
    for port, res in results.items():
        if isinstance(res, Exception):
            failed += 1
            print(f"{port}: FAILED {res}")
        else:
            print(f"{port}: {res.hardware_id} -> {res.device_id}, certificate {res.serial[:16]}..., locked")
    print(f"{len(ports) - failed} of {len(ports)} provisioned in {time.perf_counter() - t0:.1f} s; log {args.log}")
    return 1 if failed else 0


def _fake(ca: FileCA, i: int):


    folder = Path(tempfile.mkdtemp(prefix="umbra-fake-device-"))
    agent = DeviceAgent(folder, hardware_id=os.urandom(6).hex(), model="umbra-bench", firmware="0.1.0",
                        trusted_ca_pem=ca.cert_pem(), self_tests={"storage": lambda: {"folder": str(folder)}})
    return FakeDevice(agent)


def _agent(args: argparse.Namespace) -> int:

    serve(args.port, args.state, args.ca)
    return 0


def _show(args: argparse.Namespace) -> int:
    log = StationLog(args.log)
    for row in log.db.execute("SELECT hardware_id, device_id, serial, firmware, status, at FROM devices ORDER BY at"):
        print("  ".join(str(x) for x in row))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="umbra-provision")
    add_parser(ap)
    args = ap.parse_args(argv)
    return int(args.func(args) or 0)

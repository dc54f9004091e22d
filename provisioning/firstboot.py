"""First boot on an installed device: provisioning mode until the station locks it, then the sensor.

    umbra-device state                       # blank | keyed | certified | configured | locked
    umbra-device is-locked | is-unlocked     # exit 0 or 1: the systemd units' ExecCondition
    umbra-device agent --port /dev/serial0 --ca /etc/umbra/mfg-ca.pem    # answer the station; exit once locked
    umbra-device render --template /etc/umbra/sensor.toml --out /run/umbra/sensor.toml

`render` writes the sensor's config: the maker's template with what provisioning stored laid over it (the
device id, the cloud URL, the pin-set signer's key, and the paths of the certificate, key, pins, batch keys and
OTA root). Nothing secret is in the template or the package: the key is made on the device by the agent.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from firmware.config import UmbraConfig, parse
from firmware.errors import ConfigError
from ota import watchdog
from provisioning.agent import DeviceAgent, SelfTest
from trust import pki

STATE_DIR = Path("/var/lib/umbra/provisioning")
TEMPLATE = Path("/etc/umbra/sensor.toml")  # the maker's sensor config: the camera self-test opens its camera
log = logging.getLogger(__name__)


def device_state(state_dir: Path) -> str:
    try:
        return str(json.loads((state_dir / "state.json").read_text())["state"])
    except FileNotFoundError:
        return "blank"
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{state_dir}/state.json unreadable: {e}") from e


def provisioned_overlay(state_dir: Path) -> dict[str, Any]:
    """The config keys that provisioning decides, from the files the agent wrote."""
    try:
        cfg = json.loads((state_dir / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"not provisioned: {state_dir}/config.json: {e}") from e
    d = str(state_dir)
    return {
        "device": {"id": cfg["device_id"]},
        "sync": {
            "tls": {"ca_file": f"{d}/ca.pem", "cert_file": f"{d}/device.pem", "key_file": f"{d}/device.key",
                    "pins_file": f"{d}/pins.json", "fleet_root_public_key": cfg["fleet_root_public_key"]},
            "uploader": {"url": cfg["cloud_url"], "device_id": cfg["device_id"], "keyring_file": f"{d}/keys.json"},
        },
        "ota": {"trusted_root": f"{d}/ota_root.json"},
    }


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render(template: Path, state_dir: Path, out: Path) -> None:
    """Template + provisioned values -> out, checked by the firmware's own config parser before it is written."""
    text, _ = rendered(template, state_dir)
    pki.write_atomic(out, text.encode())


def rendered(template: Path, state_dir: Path) -> tuple[str, UmbraConfig]:
    """The sensor's config (its TOML and as parsed): the template with the provisioned values laid over it."""
    try:
        table = tomllib.loads(template.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{template}: {e}") from e
    over = provisioned_overlay(state_dir)
    ota = table.get("ota", {})
    if isinstance(ota, dict) and ota.get("enabled") and not ota.get("base_url"):
        over["ota"]["base_url"] = over["sync"]["uploader"]["url"].rstrip("/") + "/ota"
    text = tomli_w.dumps(merge(table, over))
    return text, parse(text, f"{template} + {state_dir}")  # a bad template is refused here, by name


class Pings:
    """sd_notify for the agent's unit (Type=notify, WatchdogSec=30): READY=1 once it answers, WATCHDOG=1 at most
    once a second while its loop turns (a hung agent is killed and restarted), STATUS= lines, STOPPING=1."""

    def __init__(self, notify: Callable[[str], bool] = watchdog.notify,
                 clock: Callable[[], float] = time.monotonic, every_s: float = 1.0) -> None:
        self.notify, self.clock, self.every_s = notify, clock, every_s
        self._last: float | None = None
        self.sent = 0

    def ready(self, status: str) -> None:
        self.notify(f"READY=1\nSTATUS={status}")

    def alive(self) -> None:
        now = self.clock()
        if self._last is None or now - self._last >= self.every_s:
            self._last = now
            if self.notify("WATCHDOG=1"):
                self.sent += 1

    def stopping(self, status: str) -> None:
        self.notify(f"STOPPING=1\nSTATUS={status}")


def serve_until_locked(port: str, state_dir: Path, ca_pem: Path, *, model: str = "umbra-pi",
                       baudrate: int = 115_200, tests: dict[str, SelfTest] | None = None,
                       pings: Pings | None = None, template: Path = TEMPLATE) -> str:
    """Answer the station on `port`; return once the device is locked (the serial service then ends for good).
    Under systemd (NOTIFY_SOCKET), tells it when it is ready and pings its watchdog from the loop. Bytes that
    are no frame (line noise, a boot loader's or a terminal's chatter) are answered as bad frames and logged
    once, as one line; the station's frames after them are served."""
    from firmware import __version__
    from hal.serial import open_serial
    from provisioning.device import hardware_id, self_tests

    pings = pings or Pings()
    agent = DeviceAgent(state_dir, hardware_id=hardware_id(), model=model, firmware=__version__,
                        trusted_ca_pem=ca_pem.read_bytes(),
                        self_tests=self_tests(state_dir, lambda: rendered(template, state_dir)[1])
                        if tests is None else tests)
    if agent.state["state"] == "locked":
        pings.ready("locked: nothing to provision")
        return "locked"
    line = open_serial(port, baudrate, timeout_s=0.2)
    log.info("provisioning agent on %s (hardware id %s, state %s)", port, agent.hardware_id, agent.state["state"])
    pings.ready(f"provisioning on {port}: {agent.state['state']}")
    try:
        while agent.state["state"] != "locked":
            pings.alive()
            data = line.read(4096)
            refused = agent.refused
            for frame in agent.feed(data) if data else ():
                line.write(frame)
            if refused == 0 < agent.refused:
                log.warning("%s: %d bytes that are not a valid request ignored (answered as a bad frame; "
                            "later ones are counted, not logged)", port, len(data))
    finally:
        line.close()
    if agent.refused:
        log.info("%d requests refused or damaged frames answered while provisioning", agent.refused)
    pings.stopping("locked: provisioning closed")
    return "locked"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="umbra-device", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", type=Path, default=STATE_DIR, help="the provisioning state folder")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("state", help="print the provisioning state")
    sub.add_parser("is-locked", help="exit 0 when the device is locked (provisioned), else 1")
    sub.add_parser("is-unlocked", help="exit 0 while the device is not locked yet, else 1")
    ag = sub.add_parser("agent", help="answer the station on the serial port until the device is locked")
    ag.add_argument("--port", default="/dev/serial0")
    ag.add_argument("--ca", type=Path, required=True, help="the manufacturing CA certificate (PEM)")
    ag.add_argument("--template", type=Path, default=TEMPLATE, help="the sensor config the self-test reads")
    rd = sub.add_parser("render", help="write the sensor's config: template + provisioned values")
    rd.add_argument("--template", type=Path, default=TEMPLATE)
    rd.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if a.command == "agent":
            print(f"device {serve_until_locked(a.port, a.state, a.ca, template=a.template)}: provisioning closed")
            return 0
        if a.command == "render":
            render(a.template, a.state, a.out)
            print(f"wrote {a.out}")
            return 0
        state = device_state(a.state)
        if a.command == "state":
            print(state)
            return 0
        return 0 if (state == "locked") == (a.command == "is-locked") else 1
    except (ConfigError, OSError) as e:
        print(f"umbra-device: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

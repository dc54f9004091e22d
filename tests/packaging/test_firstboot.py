"""First boot: the agent answers a real station over a serial line until the device is locked, then exits; the
sensor's config is the template plus what provisioning stored; the units' conditions read the state."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.config import parse
from provisioning import firstboot
from provisioning.fakepty import Cable
from provisioning.station import FileCA, FleetSettings, Station, StationLog
from trust import pki

TEMPLATE = Path(__file__).resolve().parents[2] / "packaging" / "sensor.toml"


def fleet(tmp_path: Path) -> FleetSettings:
    from trust.keys import BatchKey

    root = Ed25519PrivateKey.generate()
    pins = pki.sign_pin_update(root, ["A" * 43 + "=", "B" * 43 + "="], 1, int(time.time()))
    return FleetSettings("https://cloud.example:8443", pins, pki.root_public_b64(root), b"{}",
                         lambda device_id: BatchKey.generate(time.time(), 86_400).to_json())


class NotifySocket:
    """systemd's end of sd_notify: an abstract datagram socket that collects what the service sends."""

    def __init__(self) -> None:
        self.name = f"@umbra-test-notify-{os.getpid()}-{time.monotonic_ns()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.settimeout(0)

    def messages(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out


def test_agent_pings_at_most_once_per_interval_on_its_clock():
    sent: list[str] = []
    now = [100.0]
    pings = firstboot.Pings(lambda m: sent.append(m) or True, clock=lambda: now[0])
    pings.ready("provisioning on /dev/serial0: blank")
    for step in (0.0, 0.3, 0.3, 0.3, 0.3, 2.0, 0.1):
        now[0] += step
        pings.alive()
    assert sent[0] == "READY=1\nSTATUS=provisioning on /dev/serial0: blank"
    assert sent[1:] == ["WATCHDOG=1"] * 3 and pings.sent == 3  # at 100, 101.2 and 103.2


def test_agent_serves_until_locked_then_the_sensor_config_renders(tmp_path, monkeypatch):
    systemd = NotifySocket()
    monkeypatch.setenv("NOTIFY_SOCKET", systemd.name)
    ca = FileCA.create(tmp_path / "ca")
    (tmp_path / "mfg-ca.pem").write_bytes(ca.cert_pem())
    state = tmp_path / "provisioning"
    assert firstboot.main(["--state", str(state), "is-unlocked"]) == 0
    assert firstboot.main(["--state", str(state), "is-locked"]) == 1
    line = Cable()
    done: dict[str, str] = {}
    agent = threading.Thread(target=lambda: done.update(
        state=firstboot.serve_until_locked(line.ports[0], state, tmp_path / "mfg-ca.pem",
                                           tests={"storage": lambda: {"ok": 1}})), daemon=True)
    agent.start()
    try:
        station = Station(ca, StationLog(tmp_path / "station.sqlite"), fleet(tmp_path))
        record = station.provision(line.ports[1], device_id="umbra-0042")
        agent.join(10)
    finally:
        line.close()
    assert record.device_id == "umbra-0042"
    assert not agent.is_alive() and done["state"] == "locked"  # the serial service ends once locked
    told = systemd.messages()  # what the unit's Type=notify and WatchdogSec=30 hear
    assert told[0].startswith("READY=1\nSTATUS=provisioning on ") and "WATCHDOG=1" in told[1:-1]
    assert told[-1] == "STOPPING=1\nSTATUS=locked: provisioning closed"
    assert firstboot.main(["--state", str(state), "is-locked"]) == 0
    assert firstboot.main(["--state", str(state), "is-unlocked"]) == 1
    out = tmp_path / "run" / "sensor.toml"
    assert firstboot.main(["--state", str(state), "render", "--template", str(TEMPLATE), "--out", str(out)]) == 0
    cfg = parse(out.read_text())
    assert cfg.device.id == cfg.sync.uploader.device_id == "umbra-0042"
    assert cfg.sync.enabled and cfg.sync.uploader.url == "https://cloud.example:8443"
    assert cfg.sync.tls.key_file == f"{state}/device.key" and Path(cfg.sync.tls.key_file).exists()
    assert cfg.ota.base_url == "https://cloud.example:8443/ota" and cfg.ota.trusted_root == f"{state}/ota_root.json"
    assert oct((state / "device.key").stat().st_mode & 0o777) == "0o600"


def provisioned(tmp_path: Path) -> Path:
    state = tmp_path / "provisioning"
    state.mkdir()
    (state / "state.json").write_text(json.dumps({"state": "locked", "device_id": "d1"}))
    (state / "config.json").write_text(json.dumps({"cloud_url": "https://c.example", "device_id": "d1",
                                                   "fleet_root_public_key": base64.b64encode(b"k" * 32).decode()}))
    return state


def test_render_refuses_a_bad_template_by_name(tmp_path, capsys):
    state = provisioned(tmp_path)
    bad = tmp_path / "sensor.toml"
    bad.write_text(TEMPLATE.read_text() + "\n[camera2]\nkind = 'pi'\n")
    out = tmp_path / "out.toml"
    assert firstboot.main(["--state", str(state), "render", "--template", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "camera2" in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_render_before_provisioning_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "out.toml"
    assert firstboot.main(["--state", str(tmp_path / "none"), "render", "--template", str(TEMPLATE),
                           "--out", str(out)]) == 2
    assert "not provisioned" in capsys.readouterr().err and not out.exists()


def test_the_maker_keeps_an_explicit_ota_url(tmp_path):
    state = provisioned(tmp_path)
    tpl = tmp_path / "sensor.toml"
    tpl.write_text(TEMPLATE.read_text().replace('state_dir = "/var/lib/umbra/ota"',
                                                'state_dir = "/var/lib/umbra/ota"\nbase_url = "https://ota.example"'))
    out = tmp_path / "out.toml"
    firstboot.render(tpl, state, out)
    assert parse(out.read_text()).ota.base_url == "https://ota.example"


@pytest.mark.parametrize("text", ["", "{", '{"nostate": 1}'])
def test_a_damaged_state_file_never_counts_as_locked(tmp_path, text):
    (tmp_path / "state.json").write_text(text)
    assert firstboot.main(["--state", str(tmp_path), "is-locked"]) == 2
    assert firstboot.main(["--state", str(tmp_path), "is-unlocked"]) == 2


def test_garbage_on_the_line_before_the_station_is_one_log_line_and_provisioning_goes_on(tmp_path, caplog):
    ca = FileCA.create(tmp_path / "ca")
    (tmp_path / "mfg-ca.pem").write_bytes(ca.cert_pem())
    state = tmp_path / "provisioning"
    line = Cable()
    served = threading.Event()

    class Pinged(firstboot.Pings):
        def ready(self, status: str) -> None:
            served.set()

    done: dict[str, str] = {}
    agent = threading.Thread(target=lambda: done.update(
        state=firstboot.serve_until_locked(line.ports[0], state, tmp_path / "mfg-ca.pem",
                                           tests={"storage": lambda: {"ok": 1}},
                                           pings=Pinged(lambda m: True))), daemon=True)
    caplog.set_level(logging.INFO, logger="provisioning.firstboot")
    agent.start()
    try:
        assert served.wait(10)
        fd = os.open(line.ports[1], os.O_WRONLY | os.O_NOCTTY)
        for noise in (b"AT\r\n+++ ATZ \x00", b"\xff\xfe\x13\x37 login: root\x00", b"\x00\x01\x02\x00"):
            os.write(fd, noise)  # a modem's, a console's and a loader's chatter: three bad frames or more
        os.close(fd)
        station = Station(ca, StationLog(tmp_path / "station.sqlite"), fleet(tmp_path))
        record = station.provision(line.ports[1], device_id="umbra-0043")
        agent.join(10)
    finally:
        line.close()
    assert record.device_id == "umbra-0043" and done["state"] == "locked"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "not a valid request ignored" in warnings[0], warnings


def test_the_camera_self_test_opens_the_camera_of_the_sensor_config(tmp_path):
    import cv2
    import numpy as np

    from provisioning.device import self_tests

    state = provisioned(tmp_path)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        assert cv2.imwrite(str(frames / f"{i:03d}.png"), np.full((480, 640, 3), 90, np.uint8))
    tpl = tmp_path / "sensor.toml"
    tpl.write_text(TEMPLATE.read_text().replace('kind = "pi"', f'kind = "video"\nsource = "{frames}"'))
    camera = self_tests(state, lambda: firstboot.rendered(tpl, state)[1])["camera"]
    assert camera() == {"kind": "video", "lores": [240, 320, 3], "lit": True}

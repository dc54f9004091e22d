"""OTA on the device: `umbra ota check` against the reference cloud, the trial health check of a running
sensor (commit or roll back), reports as schema-valid umbra.ota/1 records, the scheduler."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from bench.lib.ota_site import Site
from firmware.cli.main import main
from firmware.config import to_toml
from firmware.schemas import validate
from hal.boot import DirectoryBootControl
from ota.agent import Scheduler, TrialMonitor, record, sensor_probes
from trust import pki


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.close()


def test_umbra_ota_check_installs_on_trial(site, tmp_path, capsys):
    import firmware

    site.publish("99.0.0", min_from="0")
    p = site.cloud.cloud.pki
    (tmp_path / "root.json").write_bytes(site.root)
    cfg = tmp_path / "sensor.toml"
    cfg.write_text(to_toml({
        "device": {"id": "dev-1"},
        "sync": {"tls": {"ca_file": str(p.ca_cert), "cert_file": str(p.device_cert), "key_file": str(p.device_key),
                         "pins_file": str(p.pins),
                         "fleet_root_public_key": pki.root_public_b64(pki.load_root_key(p.root_key))}},
        "ota": {"enabled": True, "base_url": f"https://localhost:{site.cloud.port}/ota", "hardware": "umbra-pi4",
                "state_dir": str(tmp_path / "ota-state"), "trusted_root": str(tmp_path / "root.json"),
                "boot": f"directory:{tmp_path / 'boot'}"},
    }))
    assert main(["ota", "check", "--config", str(cfg)]) == 0
    assert "update available: 99.0.0" in capsys.readouterr().out
    assert main(["ota", "check", "--config", str(cfg), "--install"]) == 0
    out = capsys.readouterr().out
    assert '"result": "installed"' in out and f'"from_version": "{firmware.__version__}"' in out
    boot = DirectoryBootControl(tmp_path / "boot")
    assert boot.state()["trying"] == "b" and (boot.slot_path("b") / "VERSION").read_text() == "99.0.0"


def fake_loop(frames=100, stalls=0, errors=0, ticks=1000):
    return SimpleNamespace(stats=SimpleNamespace(ticks=ticks, frames=frames, camera_stalls=stalls,
                                                 detector_errors=errors, overruns=0))


@pytest.mark.parametrize("healthy", [True, False])
def test_a_slot_on_trial_is_committed_or_rolled_back_and_reported(tmp_path, healthy):
    boot = DirectoryBootControl(tmp_path / "boot")
    boot.try_next("b")
    boot.boot()
    loop = fake_loop(stalls=0 if healthy else 3)
    sync = SimpleNamespace(uploader=SimpleNamespace(stats=SimpleNamespace(batches=2)))
    probes = sensor_probes(loop, sync, detect_hz=10, max_restarts=3, restarts=lambda: 0)
    probes["loop"] = lambda: True  # (the real one needs 10 s of ticks)
    reports: list[dict] = []
    mon = TrialMonitor(boot, probes, 0.5, reports.append, "1.1.0", "1.0.0")
    mon.run()
    assert len(reports) == 1
    validate(reports[0])
    if healthy:
        assert reports[0]["result"] == "committed" and boot.state()["committed"] == "b"
    else:
        assert reports[0]["result"] == "rolled_back" and "camera" in reports[0]["reason"]
        assert boot.state()["committed"] == "a" and boot.active() == "a"


def test_scheduler_checks_on_kick_and_stops():
    ran = threading.Event()
    s = Scheduler(ran.set, every_s=3600)
    s.start()
    s.kick()
    assert ran.wait(5)
    s.stop()
    s.join(5)
    assert not s.is_alive()
    validate(record("1.2.0", "1.1.0", "refused", "metadata: expired", now=1.7e9))


def test_ops_status_reads_device_reports_from_the_cloud_and_halts(tmp_path, capsys):
    import sqlite3

    from ota.repo import Repository
    from ota.rollout import make_plan, position

    repo = Repository(tmp_path / "repo")
    repo.init()
    repo.set_rollout(make_plan("2.0.0", [5, 100], [0, 1e12], [0.02, 0.02]))
    fleet = [f"u{i}" for i in range(200)]
    (tmp_path / "fleet.txt").write_text("\n".join(fleet))
    (tmp_path / "cloud").mkdir()
    db = sqlite3.connect(tmp_path / "cloud" / "cloud.sqlite")
    db.execute("CREATE TABLE records (device_id TEXT, outbox_id TEXT, seq INTEGER, schema TEXT, body TEXT)")
    canaries = [d for d in fleet if position(d, "2.0.0") < 0.05]
    import json

    for n, d in enumerate(canaries):
        for result in ("installed", "committed" if n else "rolled_back"):
            db.execute("INSERT INTO records VALUES (?, 'o', ?, 'umbra.ota/1', ?)",
                       (d, n, json.dumps(record("2.0.0", "1.0.0", result))))
    db.commit()
    db.close()
    assert main(["ota", "status", "--repo", str(tmp_path / "repo"), "--fleet", str(tmp_path / "fleet.txt"),
                 "--cloud-data", str(tmp_path / "cloud"), "--apply"]) == 3
    out = capsys.readouterr().out
    assert f"{len(canaries)} reported, 1 failed" in out and "HALT" in out
    assert repo.rollout("2.0.0")["state"] == "halted"


@pytest.mark.parametrize("healthy", [True, False])
def test_a_trial_report_after_a_reboot_a_day_behind_is_stamped_on_the_sensors_time(tmp_path, monkeypatch, healthy):
    """A slot on trial has just booted, before NTP: the machine's clock (time.time too) a day behind. The
    committed / rolled_back report carries the sensor's best estimate, never before the last trusted time."""
    import json
    import time

    from hal.clock import FakeClock
    from hal.trustedtime import FakeNtp, SkewedClock, TrustedClock

    true_now = 1_800_000_000.0
    state = tmp_path / "trusted_time.json"
    state.write_text(json.dumps({"last_trusted_wall": true_now - 120}))  # known before the reboot
    machine = SkewedClock(FakeClock(start_wall=true_now), -86_400.0)
    monkeypatch.setattr(time, "time", machine.wall)
    clock = TrustedClock(machine, FakeNtp(synced=False), state)
    boot = DirectoryBootControl(tmp_path / "boot")
    boot.try_next("b")
    boot.boot()
    probes = sensor_probes(fake_loop(stalls=0 if healthy else 3), SimpleNamespace(uploader=SimpleNamespace(
        stats=SimpleNamespace(batches=2))), detect_hz=10, max_restarts=3, restarts=lambda: 0)
    probes["loop"] = lambda: True
    reports: list[dict] = []
    TrialMonitor(boot, probes, 0.5, reports.append, "1.1.0", "1.0.0", clock).run()
    assert reports[0]["result"] == ("committed" if healthy else "rolled_back")
    assert reports[0]["t"] >= true_now - 120  # not a day early

"""The shipped systemd units: `systemd-analyze verify` clean, `systemd-analyze security` at most 2.5 each, and
none runs as root but the tryboot boot switch, which holds CAP_SYS_BOOT alone and runs root's program."""

from __future__ import annotations

import configparser
import importlib.util
import shutil
from pathlib import Path

import pytest

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
spec = importlib.util.spec_from_file_location("units_check", PACKAGING / "units_check.py")
assert spec and spec.loader
units_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(units_check)

needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze not installed (apt-get install systemd)")
SERVICES = [p for p in units_check.units() if p.suffix == ".service"]
SWITCH = PACKAGING / "systemd" / "umbra-boot-switch.service"


def unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text())
    return cp


def test_the_units_are_the_six_the_package_installs():
    assert sorted(p.name for p in units_check.units()) == [
        "umbra-boot-switch.path", "umbra-boot-switch.service", "umbra-ota-check.service", "umbra-ota-check.timer",
        "umbra-provision.service", "umbra.service"]


@pytest.mark.parametrize("path", [p for p in SERVICES if p != SWITCH], ids=lambda p: p.name)
def test_no_service_runs_as_root(path):
    svc = unit(path)["Service"]
    assert svc.get("User") == "umbra" and svc.get("Group") == "umbra"
    assert svc.get("CapabilityBoundingSet", "x") == "" and svc.get("NoNewPrivileges") == "yes"
    assert not any(v.lstrip("-@:!").startswith("+") for k, v in svc.items() if k.startswith("Exec"))


def test_the_boot_switch_is_root_with_cap_sys_boot_alone_and_runs_only_root_s_program():
    """The one root unit (docs/INSTALL.md, "The tryboot switch"): autoboot.txt on vfat and
    /run/systemd/reboot-param are root's; logind grants the reboot to CAP_SYS_BOOT. It must never run code
    from /opt/umbra, which the umbra user's OTA writes."""
    svc = unit(SWITCH)["Service"]
    assert "User" not in svc and svc["CapabilityBoundingSet"] == "CAP_SYS_BOOT" and svc["AmbientCapabilities"] == ""
    assert svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict" and svc["PrivateNetwork"] == "yes"
    assert svc["ReadWritePaths"] == "-/boot/firmware /run/umbra-boot /run/systemd"
    assert "@reboot" in svc["SystemCallFilter"]  # PID 1 reboots, not this process
    assert svc.get("ProcSubset", "all") == "all"  # a commit reads the booted partition in /proc/device-tree
    execs = [v for k, v in svc.items() if k.startswith("Exec")]
    assert execs == ["/usr/bin/python3 -E -s -B /usr/lib/umbra/boot-switch/umbra-boot-switch --dir /run/umbra-boot "
                     "--boot-dir /boot/firmware"]
    path = unit(PACKAGING / "systemd" / "umbra-boot-switch.path")
    assert path["Path"]["PathExists"] == "/run/umbra-boot/request" and path["Path"]["Unit"] == SWITCH.name
    assert path["Unit"]["ConditionPathExists"] == "/boot/firmware/autoboot.txt"
    tmpfiles = (PACKAGING / "debian" / "tmpfiles.conf").read_text()
    assert "d /run/umbra-boot 0770 root umbra -" in tmpfiles  # the umbra group asks, root answers
    assert "umbra-boot-switch.path" in (PACKAGING / "debian" / "postinst").read_text()


def test_the_provisioning_agent_runs_only_on_an_unlocked_device_and_hands_over_to_the_sensor():
    prov = unit(PACKAGING / "systemd" / "umbra-provision.service")
    sensor = unit(PACKAGING / "systemd" / "umbra.service")
    assert prov["Service"]["ExecCondition"].endswith("umbra-device is-unlocked")
    assert prov["Unit"]["OnSuccess"] == "umbra.service"
    assert sensor["Service"]["ExecCondition"].endswith("umbra-device is-locked")
    assert prov["Service"]["PrivateNetwork"] == "yes"  # the serial console is its only line


@pytest.mark.parametrize(("name", "watchdog_s"), [("umbra-provision.service", "30"), ("umbra.service", "15")])
def test_the_long_running_services_tell_systemd_they_are_ready_and_alive(name, watchdog_s):
    svc = unit(PACKAGING / "systemd" / name)["Service"]
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "main" and svc["WatchdogSec"] == watchdog_s
    assert svc["Restart"] == "on-failure"  # a watchdog kill is a failure: restarted


def test_ota_installs_into_the_slots_and_nowhere_else_under_opt():
    """... and asks the boot switch for a tryboot slot (hal.boot.SwitchRequester): the request folder is all
    it may write besides."""
    svc = unit(PACKAGING / "systemd" / "umbra-ota-check.service")["Service"]
    assert svc["ProtectSystem"] == "strict" and svc["ReadWritePaths"] == "/opt/umbra/slots -/run/umbra-boot"


def test_the_sensor_can_commit_its_trial_in_the_slots_and_write_nothing_else_under_opt():
    """The sensor runs a trial's health check (firmware.cli.run.start_ota): with the package's slots it commits
    or rolls back by rewriting /opt/umbra/slots/boot.json and its current link. Before, its unit saw /opt
    read-only, so the commit failed on an installed device."""
    svc = unit(PACKAGING / "systemd" / "umbra.service")["Service"]
    assert svc["ProtectSystem"] == "strict" and svc["ReadWritePaths"] == "-/opt/umbra/slots -/run/umbra-boot"
    assert "/opt/umbra/slots" in (PACKAGING / "debian" / "postinst").read_text()  # where the package puts them


@needs_systemd
def test_systemd_analyze_verify_is_clean():
    rc, text = units_check.verify(units_check.units())
    assert rc == 0 and text == ""


@needs_systemd
def test_verify_catches_a_key_in_the_wrong_section(tmp_path):
    bad = tmp_path / "umbra.service"
    text = (PACKAGING / "systemd" / "umbra.service").read_text()
    text = text.replace("[Service]\n", "[Service]\nAfter=network.target\n", 1)
    bad.write_text(text.replace("/opt/umbra/current/bin/umbra run", "/nonexistent"))
    rc, text = units_check.verify([bad])
    assert "Unknown key 'After' in section [Service]" in text and "nonexistent" in text


@needs_systemd
@pytest.mark.parametrize("path", SERVICES, ids=lambda p: p.name)
def test_security_exposure_at_most_2_5(path):
    assert units_check.exposure(path) <= units_check.MAX_EXPOSURE


@needs_systemd
def test_exposure_figure_moves_with_the_hardening(tmp_path):
    loose = tmp_path / "loose.service"
    loose.write_text("[Service]\nExecStart=/bin/true\n")
    assert units_check.exposure(loose) > 9.0

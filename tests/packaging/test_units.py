"""The shipped systemd units: `systemd-analyze verify` clean, `systemd-analyze security` at most 2.5 each, and
none runs as root: the tryboot boot switch is its own umbra-boot user without capabilities, running root's
program; the polkit rule that lets it ask logind for the reboot, run under a JavaScript engine."""

from __future__ import annotations

import configparser
import importlib.util
import json
import re
import shutil
import subprocess
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


@pytest.mark.parametrize("path", SERVICES, ids=lambda p: p.name)
def test_no_service_runs_as_root(path):
    svc = unit(path)["Service"]
    user = "umbra-boot" if path == SWITCH else "umbra"
    assert svc.get("User") == user and svc.get("Group") == user
    assert svc.get("CapabilityBoundingSet", "x") == "" and svc.get("NoNewPrivileges") == "yes"
    assert svc.get("AmbientCapabilities", "") == ""
    assert not any(v.lstrip("-@:!").startswith("+") for k, v in svc.items() if k.startswith("Exec"))


def test_the_boot_switch_is_its_own_user_without_capabilities_and_runs_only_root_s_program():
    """docs/INSTALL.md, "The tryboot switch": the umbra-boot user, in no other group, no capability; it writes the
    boot partition by its mount's group (boot-firmware.mount.d) and reboots through logind by a polkit rule, so
    it needs no write to /run/systemd (reboot-param is logind's to write). It must never run code from
    /opt/umbra, which the umbra user's OTA writes."""
    svc = unit(SWITCH)["Service"]
    assert svc["User"] == "umbra-boot" and svc["CapabilityBoundingSet"] == "" and svc["AmbientCapabilities"] == ""
    assert svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict" and svc["PrivateNetwork"] == "yes"
    assert svc["ReadWritePaths"] == "-/boot/firmware /run/umbra-boot"
    assert "SupplementaryGroups" not in svc
    assert "@reboot" in svc["SystemCallFilter"]  # PID 1 reboots, not this process
    assert svc.get("ProcSubset", "all") == "all"  # a commit reads the booted partition in /proc/device-tree
    execs = [v for k, v in svc.items() if k.startswith("Exec")]
    assert execs == ["/usr/bin/python3 -E -s -B /usr/lib/umbra/boot-switch/umbra-boot-switch --dir /run/umbra-boot "
                     "--boot-dir /boot/firmware"]
    path = unit(PACKAGING / "systemd" / "umbra-boot-switch.path")
    assert path["Path"]["PathExists"] == "/run/umbra-boot/request" and path["Path"]["Unit"] == SWITCH.name
    assert path["Unit"]["ConditionPathExists"] == "/boot/firmware/autoboot.txt"
    tmpfiles = (PACKAGING / "debian" / "tmpfiles.conf").read_text()
    assert "d /run/umbra-boot 0770 umbra-boot umbra -" in tmpfiles  # the umbra group asks, umbra-boot answers
    users = [line.split() for line in (PACKAGING / "debian" / "sysusers.conf").read_text().splitlines()
             if line and not line.startswith("#")]
    assert ["u", "umbra-boot", "-"] == users[[u[1] for u in users].index("umbra-boot")][:3]
    assert not any(u[0] == "m" and "umbra-boot" in u[1:3] for u in users)  # in no group, and no one in its group
    assert "umbra-boot-switch.path" in (PACKAGING / "debian" / "postinst").read_text()


def test_the_boot_partition_is_writable_by_the_switch_s_group_alone():
    """The drop-in for the fstab-generated boot-firmware.mount: vfat's mount-wide owner and masks. Files are
    root's and umbra-boot's, group-writable, read-only to others, never executable; folders likewise."""
    mount = unit(PACKAGING / "systemd" / "boot-firmware.mount.d" / "umbra-boot-switch.conf")["Mount"]
    opts = dict(o.partition("=")[::2] for o in mount["Options"].split(","))
    assert opts["uid"] == "0" and opts["gid"] == "umbra-boot"
    fmask, dmask = int(opts["fmask"], 8), int(opts["dmask"], 8)
    assert 0o777 & ~fmask == 0o664 and 0o777 & ~dmask == 0o775
    stage = (PACKAGING / "pi-gen" / "stage-umbra" / "00-install-umbra" / "00-run.sh").read_text()
    assert mount["Options"] in stage  # the image's fstab says the same, for a `mount` by hand


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


RULE = PACKAGING / "polkit" / "10-umbra-boot-switch.rules"
NEEDED = ["org.freedesktop.login1.set-reboot-parameter", "org.freedesktop.login1.reboot",
          "org.freedesktop.login1.reboot-multiple-sessions"]
OTHERS = ["org.freedesktop.login1.reboot-ignore-inhibit", "org.freedesktop.login1.power-off",
          "org.freedesktop.login1.halt", "org.freedesktop.login1.set-reboot-to-firmware-setup",
          "org.freedesktop.login1.set-wall-message", "org.freedesktop.login1.inhibit-block-shutdown",
          "org.freedesktop.systemd1.manage-units", "org.freedesktop.policykit.exec", "org.freedesktop.login1.reboot.x"]
# polkitd's side of a rules file, as far as a rule sees it: polkit.addRule, polkit.Result, and a subject and an
# action with the fields polkitd gives them (a system service: no session, not local, not active)
POLKIT_JS = r"""
const fs = require("fs"), vm = require("vm");
const rules = [];
const polkit = {Result: {NO: "no", YES: "yes", AUTH_SELF: "auth_self", AUTH_SELF_KEEP: "auth_self_keep",
                         AUTH_ADMIN: "auth_admin", AUTH_ADMIN_KEEP: "auth_admin_keep", NOT_HANDLED: null},
                addRule: (f) => rules.push(f), addAdminRule: () => {}, log: () => {}, spawn: () => { throw "no"; }};
vm.runInNewContext(fs.readFileSync(process.argv[2], "utf8"), {polkit: polkit});
const out = JSON.parse(process.argv[3]).map(([user, id]) => {
  const subject = {user: user, groups: [user], pid: 4242, local: false, active: false, seat: "", session: "",
                   isInGroup: (g) => g === user, isInNetGroup: () => false};
  const action = {id: id, lookup: () => undefined};
  for (const f of rules) {
    const r = f(action, subject);
    if (r !== null && r !== undefined) return r;
  }
  return "not handled";
});
console.log(JSON.stringify({rules: rules.length, answers: out}));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="no JavaScript engine (apt-get install nodejs)")
def test_the_polkit_rule_lets_the_switch_s_user_alone_ask_for_the_tryboot_reboot(tmp_path):
    """Run under node with polkitd's rule API: umbra-boot gets the three actions logind checks for
    SetRebootParameter and Reboot, and a no for every other action; umbra (the sensor, the OTA client), root
    and a login user get nothing from it (polkit's defaults decide for them, as without the rule)."""
    harness = tmp_path / "polkit.js"
    harness.write_text(POLKIT_JS)
    users = ["umbra-boot", "umbra", "root", "pi", "umbra-boot2", "Umbra-boot"]
    cases = [[u, a] for u in users for a in NEEDED + OTHERS]
    out = subprocess.run(["node", str(harness), str(RULE), json.dumps(cases)], capture_output=True, text=True,
                         check=True, timeout=60)
    got = json.loads(out.stdout)
    assert got["rules"] == 1
    expected = ["yes" if u == "umbra-boot" and a in NEEDED else "no" if u == "umbra-boot" else "not handled"
                for u, a in cases]
    keys = [tuple(c) for c in cases]
    assert dict(zip(keys, got["answers"], strict=True)) == dict(zip(keys, expected, strict=True))


def test_the_polkit_rule_is_es5_for_polkitd_s_duktape():
    """Debian 12's polkitd (122) runs rules in duktape, which has no let/const/arrow functions: node would
    accept them, polkitd would drop the file with a line in its journal."""
    text = re.sub(r"//[^\n]*", "", RULE.read_text())
    assert not re.search(r"\b(let|const|class)\b|=>|`", text)
    assert text.count("polkit.addRule(") == 1 and "polkit.spawn" not in text


def test_the_agent_has_no_install_section_its_generator_decides():
    """A locked device's agent is in no boot: the unit cannot be enabled (no [Install]); the generator wants it
    until the lock and masks it after; ExecCondition stays as the second guard."""
    agent = unit(PACKAGING / "systemd" / "umbra-provision.service")
    assert "Install" not in agent.sections()
    assert agent["Service"]["ExecCondition"] == "/opt/umbra/current/bin/umbra-device is-unlocked"
    assert (PACKAGING / "systemd" / "umbra-provision-generator").stat().st_mode & 0o111  # executable in git too
    for name in ("umbra.service", "umbra-ota-check.timer", "umbra-boot-switch.path"):
        assert "Install" in unit(PACKAGING / "systemd" / name).sections(), name

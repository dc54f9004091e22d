"""Opt-in (UMBRA_INSTALL_TEST=1, as root, ~10 min): packaging/install_test.sh in a clean Debian 12 root made
with debootstrap from Debian's mirror: dpkg -i, the user, folders, units and slot layout, `umbra run` of the
bench config as the umbra user, the upgrade N -> N+1, purge; and packaging/boot_test.sh, the same root booted
under a real systemd with systemd-nspawn. Skips with the reason when a part is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")


def mirror_unreachable() -> str:
    """Why Debian's mirror cannot be used from here, or '' when it answers."""
    try:
        with urllib.request.urlopen(f"{MIRROR}/dists/bookworm/Release", timeout=10) as r:
            return "" if r.status == 200 else f"{MIRROR} answered {r.status}"
    except OSError as e:
        return f"{MIRROR} unreachable ({e})"


def between(text: str, start: str, end: str) -> str:
    """The part of the script's output from the line `start` up to the line `end` (both must be there)."""
    assert start in text and end in text, f"{start!r} .. {end!r} not in the output"
    return text[text.index(start):text.index(end)]


pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600),
              pytest.mark.skipif(os.environ.get("UMBRA_INSTALL_TEST") != "1",
                                 reason="opt-in: UMBRA_INSTALL_TEST=1 (root, debootstrap, ~10 min)"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for debootstrap and chroot"),
              pytest.mark.skipif(shutil.which("debootstrap") is None,
                                 reason="debootstrap not installed (apt-get install debootstrap)")]


def test_install_run_upgrade_purge_in_a_clean_debian_12_root():
    why = mirror_unreachable()
    if why:
        pytest.skip(f"no Debian 12 root can be made: {why}")
    out = subprocess.run(["bash", str(REPO / "packaging" / "install_test.sh")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    text = out.stdout
    assert "groups=" in text and "(dialout)" in text and "(video)" in text
    assert "current: /opt/umbra/current -> slots/current -> slot-a/0.1.0-1" in text
    assert "slots: umbra:umbra" in text and '"committed": "a"' in text
    assert "umbra run: exit 0" in text and "config kept" in text and "state kept" in text
    assert "-> slot-a/0.1.0-2; slot-a holds: 0.1.0-2 " in text  # the upgrade replaced the venv in slot A
    assert "dpkg -i during a trial: refused: umbra: an OTA trial of slot b is pending" in text
    assert "trial state untouched; dpkg has: 0.1.0-2 ii" in text
    assert "systemd-analyze verify --root (installed units): clean" in text
    assert text.rstrip().endswith("nothing")  # purge leaves nothing but dpkg's records and the system user


@pytest.mark.skipif(shutil.which("systemd-nspawn") is None,
                    reason="systemd-nspawn not installed (apt-get install systemd-container)")
def test_the_units_under_a_real_systemd_booted_in_nspawn():
    """packaging/boot_test.sh: systemd 252 as PID 1 of the installed root; on a blank device the agent and the
    sensor are skipped by their conditions and the OTA timer waits; on a device marked locked the sensor with the
    template's Pi camera and no picamera2 exits 2 with one line before READY=1, and on a camera stand-in (a folder
    of generated frames) its ExecCondition and render pass, `umbra run` sends READY=1 inside all of its unit's
    hardening and reads every frame through the detector; the tryboot
    switch, as the umbra-boot user without capabilities, answers the umbra user's requests, refuses garbage with
    one line, cannot write a boot partition that is root's alone, is granted by the container's polkitd exactly
    the actions of its rule, and reboots the container through logind (the tryboot parameter itself logind
    refuses in any container)."""
    why = mirror_unreachable()
    if why:
        pytest.skip(f"no Debian 12 root can be made: {why}")
    out = subprocess.run(["bash", str(REPO / "packaging" / "boot_test.sh")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    text = out.stdout
    assert "as PID 1 in the container: running" in text
    assert "umbra-provision.service: Result=success ActiveState=inactive SubState=dead ConditionResult=no" in text
    assert "umbra.service: Result=exec-condition" in text
    assert "umbra-ota-check.timer: Result=success ActiveState=active SubState=waiting" in text
    assert "wrote /run/umbra/sensor.toml" in text and "Started umbra.service" in text  # READY=1 heard
    # no sandbox or bus denial anywhere, but the one refusal asked for: the switch on a boot partition root's alone
    refused = "cannot write /boot/firmware/autoboot.txt: Permission denied"
    assert refused in text and "SIGSYS" not in text and "denied" not in text.replace(refused, "")
    # the template as installed (the Pi camera) without picamera2: refused at once, one line and exit 2, no READY=1
    pi = between(text, "-- the template as installed", "-- a camera stand-in")
    assert "sensor's process: Result=exit-code ExecMainCode=1 ExecMainStatus=2" in pi
    assert "\n  umbra: picamera2 is not installed: " in pi and "status=2/INVALIDARGUMENT" in pi
    assert "Started umbra.service" not in pi and "Traceback" not in text
    # a camera stand-in (a folder of 20 generated frames): READY=1, every frame through the detector, a clean end
    standin = between(text, "-- a camera stand-in", "== the tryboot switch")
    assert "stand-in: 20 frames in /srv/umbra-standin/frames" in standin
    assert "wrote /run/umbra/sensor.toml" in standin and "Started umbra.service" in standin
    assert "umbra stopped after " in standin and " ticks (20 frames)" in standin
    assert "detector errors: 0; camera stalls: 0" in standin
    assert "sensor's process: Result=success ExecMainCode=1 ExecMainStatus=0" in standin
    # the tryboot switch on a stand-in autoboot.txt, asked by the umbra user through hal.boot.SwitchRequester
    switch = text[text.index("== the tryboot switch"):]
    assert re.search(r"boot-firmware.mount \(from fstab, with the package's drop-in\): "
                     r"Options=defaults,uid=0,gid=umbra-boot,fmask=0113,dmask=0002 "
                     r"DropInPaths=(/usr)?/lib/systemd/system/boot-firmware.mount.d/umbra-boot-switch.conf\n", switch)
    # ... on the unit systemd-fstab-generator made from the fstab line, whose own options the drop-in replaced
    assert ("  made by: FragmentPath=/run/systemd/generator/boot-firmware.mount What=tmpfs (the fstab line's); "
            "the fstab line's options: defaults,noauto\n") in switch
    assert re.search(r"umbra-boot: uid=\d+\(umbra-boot\) gid=(\d+)\(umbra-boot\) groups=\1\(umbra-boot\)\n", switch)
    assert "umbra-boot-switch.service: CapabilityBoundingSet= User=umbra-boot Group=umbra-boot" in switch
    assert "umbra-boot-switch.path: Result=success ActiveState=active SubState=waiting" in switch
    assert ("the boot partition root's alone (a vfat mounted without the drop-in's options):\n  answer: "
            "hal.errors.BootControlError: the boot switch refused 'try': cannot write /boot/firmware/autoboot.txt: "
            "Permission denied") in switch
    assert ("try b:\n  answer: ok\n  autoboot.txt: [all] tryboot_a_b=1 boot_partition=2 [tryboot] boot_partition=3"
            in switch) and "autoboot.txt written by: umbra-boot" in switch
    assert "refused 'try': slot a is the committed one" in switch
    assert "garbage: umbra-boot-switch: bad request 'garbage; reboot\\n'" in text and "autoboot.txt unchanged" in text
    assert "umbra-boot-switch.path after a refusal: Result=success ActiveState=active" in text
    # the container's polkitd on the package's rule: umbra-boot gets the three actions and nothing else; umbra none
    for action in ("set-reboot-parameter", "reboot", "reboot-multiple-sessions"):
        assert f"  umbra-boot {action}: authorized\n" in switch
    for user, action in [("umbra-boot", "reboot-ignore-inhibit"), ("umbra-boot", "power-off")] + [
            ("umbra", a) for a in ("set-reboot-parameter", "reboot", "reboot-multiple-sessions",
                                   "reboot-ignore-inhibit", "power-off")]:
        assert f"  {user} {action}: not authorized (pkcheck exit " in switch
    assert "the umbra user asks logind to reboot itself: Call failed: Interactive authentication required." in switch
    # `boot`: logind refuses the reboot parameter in a container (before polkit): nothing rebooted, one line back
    assert ("refused 'boot': logind SetRebootParameter failed: Call failed: Reboot parameter not supported in "
            "containers, refusing.") in switch
    # `rollback`: [tryboot] back to the committed slot, and logind's Reboot, granted to umbra-boot, rebooted it
    assert "container stopped: nspawn exit 133" in switch
    assert ("container rebooted)\n  autoboot.txt: [all] tryboot_a_b=1 boot_partition=2 [tryboot] boot_partition=2"
            in switch)
    assert "nspawn exit 133" in text and "Reached target reboot.target" in text

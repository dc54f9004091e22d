"""The tryboot switch on a real Raspberry Pi A/B image with the package installed: the umbra user's request
through /run/umbra-boot reaches umbra-boot-switch.service, which rewrites the real autoboot.txt on the vfat boot
partition, and refuses what the boot state does not allow. Nothing here reboots: run as root or as a member of
the umbra group (`sudo -u umbra python3 -m pytest hw-tests/test_tryboot_hw.py`).

The reboot itself is by hand, since it ends the test run: with a release installed into the other slot,
`umbra ota check --install` (or `TrybootBootControl().try_next(...)`) then `TrybootBootControl().boot()`; the Pi
must come back on the other partition (`/proc/device-tree/chosen/bootloader/partition`, `tryboot` = 1), and a
second plain `reboot` without a commit must bring back the committed one."""

from __future__ import annotations

import grp
import os
import subprocess
from pathlib import Path

import pytest

from hal.boot import TrybootBootControl
from hal.errors import BootControlError
from hal.tryboot_switch import BOOT_DIR, DEVICE_TREE, REQUEST_DIR


def _reason() -> str | None:
    try:
        model = Path("/proc/device-tree/model").read_text().rstrip("\x00")
    except OSError:
        model = ""
    if "Raspberry Pi" not in model:
        return "not a Raspberry Pi"
    if not (BOOT_DIR / "autoboot.txt").is_file():
        return f"no {BOOT_DIR}/autoboot.txt: not a tryboot A/B image"
    if not (DEVICE_TREE / "partition").exists():
        return f"no {DEVICE_TREE}/partition: the firmware does not say which partition booted"
    active = subprocess.run(["systemctl", "is-active", "umbra-boot-switch.path"], capture_output=True, text=True)
    if active.stdout.strip() != "active":
        return "umbra-boot-switch.path is not active (install the package; systemctl enable --now it)"
    if not os.access(REQUEST_DIR, os.W_OK):
        return f"{REQUEST_DIR} is not writable here: run as root or as the umbra user"
    return None


pytestmark = pytest.mark.skipif(_reason() is not None, reason=_reason() or "")


def test_the_switch_sets_and_clears_the_try_on_the_real_boot_partition():
    boot = TrybootBootControl()
    st = boot.state()
    if st["trying_now"]:
        pytest.skip("a slot is on trial now: its health check decides, not this test")
    committed, other = st["committed"], boot.inactive()
    try:
        boot.try_next(other)
        assert boot.state()["tryboot"] == other and boot.state()["committed"] == committed
        with pytest.raises(BootControlError, match="is the committed one"):
            boot.try_next(committed)
    finally:
        if boot.active() == committed:
            boot.mark_good()  # [tryboot] back to the running, committed slot: no try left pending
    assert boot.state()["tryboot"] == committed and boot.state()["committed"] == committed


def test_only_the_booted_slot_may_be_committed():
    boot = TrybootBootControl()
    with pytest.raises(BootControlError, match="is not the booted one"):
        boot.request("commit", boot.inactive())


def test_the_boot_partition_is_mounted_for_the_switch_s_group():
    """The switch's umbra-boot user writes autoboot.txt by the vfat mount's group and masks (the package's
    boot-firmware.mount.d drop-in, from the next boot after an install; docs/INSTALL.md, "The tryboot switch")."""
    gid = grp.getgrnam("umbra-boot").gr_gid
    mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    (fstype, options), = [(m[2], m[3].split(",")) for m in mounts if m[1] == str(BOOT_DIR)]
    assert fstype == "vfat" and f"gid={gid}" in options and "fmask=0113" in options and "dmask=0002" in options
    st = (BOOT_DIR / "autoboot.txt").stat()
    assert st.st_uid == 0 and st.st_gid == gid and st.st_mode & 0o777 == 0o664


@pytest.mark.skipif(os.geteuid() != 0, reason="runs a process as umbra-boot (systemd-run --uid): run it with sudo")
def test_logind_lets_the_switch_s_user_set_the_tryboot_parameter():
    """logind answers `yes` to CanRebootParameter for umbra-boot (the package's polkit rule), without
    rebooting."""
    can = subprocess.run(["systemd-run", "--quiet", "--wait", "--pipe", "--uid=umbra-boot", "busctl", "call",
                          "--system", "org.freedesktop.login1", "/org/freedesktop/login1",
                          "org.freedesktop.login1.Manager", "CanRebootParameter"], capture_output=True, text=True)
    assert can.stdout.strip() == 's "yes"', can.stderr

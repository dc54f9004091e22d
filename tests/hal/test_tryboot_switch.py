"""The Raspberry Pi tryboot switch (hal.tryboot_switch, run by umbra-boot-switch.service) against a temporary boot
partition and device tree, and TrybootBootControl asking it through a SwitchRequester. logind is asked through a
stand-in busctl that records its arguments: the real reboot needs a Pi (hw-tests/test_tryboot_hw.py); the nspawn
test (packaging/boot_test.sh) asks the container's logind and polkitd as the umbra-boot user."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hal import tryboot_switch
from hal.boot import SwitchRequester, TrybootBootControl
from hal.errors import BootControlError

ROOT = Path(__file__).resolve().parents[2]
AUTOBOOT_A = b"[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=2\n"
RID = "0123456789abcdef0123456789abcdef"
LOGIND = "call --system org.freedesktop.login1 /org/freedesktop/login1 org.freedesktop.login1.Manager"
SET_TRYBOOT = f"{LOGIND} SetRebootParameter s 0 tryboot"
REBOOT = f"{LOGIND} Reboot b false"


class Device:
    """A boot partition, a device tree that says which partition booted, the request folder, and a stand-in
    busctl (a real executable) that appends its arguments to calls.txt."""

    def __init__(self, tmp: Path, booted: int = 2, autoboot: bytes | None = AUTOBOOT_A) -> None:
        self.boot, self.dt, self.req = tmp / "boot", tmp / "dt", tmp / "run-umbra-boot"
        for d in (self.boot, self.dt, self.req):
            d.mkdir()
        if autoboot is not None:
            (self.boot / "autoboot.txt").write_bytes(autoboot)
        self.booted(booted)
        self.calls = tmp / "calls.txt"
        self.busctl = tmp / "busctl"
        self.busctl.write_text(f'#!/bin/sh\necho "$*" >> {self.calls}\n')
        self.busctl.chmod(0o755)

    def booted(self, partition: int) -> None:
        (self.dt / "partition").write_bytes(partition.to_bytes(4, "big"))

    def args(self) -> list[str]:
        return ["--dir", str(self.req), "--boot-dir", str(self.boot), "--device-tree", str(self.dt),
                "--busctl", str(self.busctl)]

    def autoboot(self) -> dict[str, int]:
        return tryboot_switch.parse_autoboot((self.boot / "autoboot.txt").read_text())

    def reboots(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def result(self) -> str:
        return (self.req / "result").read_text().strip()


@pytest.fixture
def installed(tmp_path):
    """The switch laid out as the package installs it (/usr/lib/umbra/boot-switch): the file and trust/files.py,
    nothing else of the project, so it must run on the standard library and those alone."""
    d = tmp_path / "boot-switch"
    (d / "trust").mkdir(parents=True)
    shutil.copy(ROOT / "hal" / "tryboot_switch.py", d / "umbra-boot-switch")
    shutil.copy(ROOT / "trust" / "files.py", d / "trust" / "files.py")
    (d / "trust" / "__init__.py").write_text("")
    return d / "umbra-boot-switch"


def run_installed(program: Path, dev: Device, request: bytes | None) -> subprocess.CompletedProcess:
    if request is not None:
        (dev.req / "request").write_bytes(request)
    env = {"PATH": "/usr/bin:/bin"}  # the unit's: no PYTHONPATH, and -E ignores it anyway
    return subprocess.run([sys.executable, "-E", "-s", "-B", str(program), *dev.args()], capture_output=True,
                          text=True, env=env, cwd=program.parent.parent.parent, timeout=60)


def test_installed_switch_tries_the_other_slot_and_reboots_into_it_once(installed, tmp_path):
    dev = Device(tmp_path)
    out = run_installed(installed, dev, f"{RID} try b\n".encode())
    assert out.returncode == 0 and out.stderr == ""
    assert dev.autoboot() == {"all": 2, "tryboot": 3} and dev.reboots() == []
    assert dev.result() == f"{RID} ok" and not (dev.req / "request").exists()
    assert (dev.req / "result").stat().st_mode & 0o777 == 0o644  # the umbra requester reads umbra-boot's answer
    out = run_installed(installed, dev, f"{RID} boot".encode())
    assert out.returncode == 0 and dev.reboots() == [SET_TRYBOOT, REBOOT]  # logind's, not systemctl's own write


def test_installed_switch_commits_only_the_booted_slot(installed, tmp_path):
    dev = Device(tmp_path, autoboot=b"[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n")
    before = (dev.boot / "autoboot.txt").read_bytes()
    out = run_installed(installed, dev, f"{RID} commit b".encode())  # still running slot a
    assert out.returncode == 1 and (dev.boot / "autoboot.txt").read_bytes() == before
    assert out.stderr.count("\n") == 1 and "slot b is not the booted one (a)" in out.stderr
    dev.booted(3)  # the tryboot reboot ran slot b
    out = run_installed(installed, dev, f"{RID} commit b".encode())
    assert out.returncode == 0 and dev.autoboot() == {"all": 3, "tryboot": 3} and dev.reboots() == []


def test_installed_switch_rolls_back_to_the_committed_slot_and_forgets_the_try(installed, tmp_path):
    dev = Device(tmp_path, booted=3,
                 autoboot=b"[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n")
    out = run_installed(installed, dev, f"{RID} rollback".encode())
    assert out.returncode == 0 and dev.autoboot() == {"all": 2, "tryboot": 2}
    assert dev.reboots() == [REBOOT]  # a plain reboot: the firmware boots [all]


@pytest.mark.parametrize("request_bytes", [
    b"garbage", b"try b", f"{RID} try c".encode(), f"{RID} try b; reboot".encode(), f"{RID} poweroff".encode(),
    f"{RID.upper()} boot".encode(), f"{RID} boot\n\n".encode(), b"\xff\xfe" * 10, (f"{RID} boot " + "x" * 200).encode(),
    b"",
], ids=["word", "no-id", "slot-c", "trailing", "action", "upper-id", "two-lines", "binary", "long", "empty"])
def test_garbage_is_one_error_line_and_nothing_changes(installed, tmp_path, request_bytes):
    dev = Device(tmp_path, autoboot=b"[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n")
    before = (dev.boot / "autoboot.txt").read_bytes()
    out = run_installed(installed, dev, request_bytes)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and out.stderr.startswith("umbra-boot-switch: ")
    assert "Traceback" not in out.stderr
    assert (dev.boot / "autoboot.txt").read_bytes() == before and dev.reboots() == []
    assert dev.result().startswith("- error: ") and not (dev.req / "request").exists()  # taken: never re-read


def test_missing_autoboot_is_one_error_line(installed, tmp_path):
    dev = Device(tmp_path, autoboot=None)
    out = run_installed(installed, dev, f"{RID} try b".encode())
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "autoboot.txt" in out.stderr
    assert not (dev.boot / "autoboot.txt").exists() and dev.reboots() == []
    assert dev.result().startswith(f"{RID} error: cannot read")


@pytest.mark.parametrize(("autoboot", "line", "says"), [
    (AUTOBOOT_A, "try a", "slot a is the committed one"),
    (AUTOBOOT_A, "boot", "no slot to try"),
    (b"[all]\nboot_partition=7\n", "try b", "partition 7 is neither slot's"),
    (b"[all]\nboot_partition=two\n", "try b", "is not a number"),
    (b"tryboot_a_b=1\n[tryboot]\nboot_partition=3\n", "try b", "no boot_partition under [all]"),
])
def test_a_request_that_does_not_fit_the_boot_state_is_refused(installed, tmp_path, autoboot, line, says):
    dev = Device(tmp_path, autoboot=autoboot)
    out = run_installed(installed, dev, f"{RID} {line}".encode())
    assert out.returncode == 1 and says in out.stderr and out.stderr.count("\n") == 1
    assert (dev.boot / "autoboot.txt").read_bytes() == autoboot and dev.reboots() == []


def test_a_symlinked_request_is_not_followed(installed, tmp_path):
    dev = Device(tmp_path)
    secret = tmp_path / "root-only"
    secret.write_text(f"{RID} try b\n")
    (dev.req / "request").symlink_to(secret)
    out = run_installed(installed, dev, None)
    assert out.returncode == 1 and "cannot open the request" in out.stderr
    assert dev.autoboot() == {"all": 2, "tryboot": 2} and secret.exists()
    # taken away (not its target): left there, PathExists= would start the switch again until its start limit
    assert not (dev.req / "request").is_symlink() and secret.read_text() == f"{RID} try b\n"
    assert run_installed(installed, dev, None).returncode == 0


def test_a_reboot_parameter_that_logind_refuses_is_reported_and_nothing_reboots(installed, tmp_path):
    dev = Device(tmp_path, autoboot=b"[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n")
    dev.busctl.write_text(f'#!/bin/sh\necho "$*" >> {dev.calls}\necho "Call failed: Access denied" >&2\nexit 1\n')
    out = run_installed(installed, dev, f"{RID} boot".encode())
    assert out.returncode == 1 and out.stderr == (
        "umbra-boot-switch: logind SetRebootParameter failed: Call failed: Access denied\n")
    assert dev.result() == f"{RID} error: logind SetRebootParameter failed: Call failed: Access denied"
    assert dev.reboots() == [SET_TRYBOOT]  # no Reboot without the tryboot parameter


def test_a_refused_reboot_is_reported_and_the_tryboot_parameter_is_taken_back(installed, tmp_path):
    dev = Device(tmp_path, autoboot=b"[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n")
    dev.busctl.write_text(f'#!/bin/sh\necho "$*" >> {dev.calls}\ncase "$*" in *Reboot\\ b*) '
                          'echo "Call failed: Interactive authentication required." >&2; exit 1;; esac\n')
    out = run_installed(installed, dev, f"{RID} boot".encode())
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "logind Reboot failed: Call failed: Interactive authentication required." in out.stderr
    # no later reboot by someone else carries '0 tryboot'
    assert dev.reboots() == [SET_TRYBOOT, REBOOT, f"{LOGIND} SetRebootParameter s "]


def test_a_missing_busctl_is_one_error_line(installed, tmp_path):
    dev = Device(tmp_path, booted=3,
                 autoboot=b"[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n")
    dev.busctl.unlink()
    out = run_installed(installed, dev, f"{RID} rollback".encode())
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "logind Reboot failed: " in out.stderr
    assert "Traceback" not in out.stderr


def test_no_request_is_nothing_to_do(installed, tmp_path):
    dev = Device(tmp_path)
    out = run_installed(installed, dev, None)
    assert out.returncode == 0 and out.stderr == "" and not (dev.req / "result").exists()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=st.one_of(st.binary(max_size=120),
                         st.builds(lambda a, b: f"{RID} {a} {b}".encode(), st.text(max_size=8), st.text(max_size=4))))
def test_any_request_is_done_exactly_as_its_grammar_says_or_refused(tmp_path_factory, line):
    dev = Device(tmp_path_factory.mktemp("dev"),
                 autoboot=b"[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n")
    (dev.req / "request").write_bytes(line)
    calls: list[list[str]] = []
    switch = tryboot_switch.Switch(dev.boot, dev.dt, busctl="busctl", run=calls.append)
    result, _ = tryboot_switch.handle(dev.req, switch)
    valid = tryboot_switch.REQUEST_LINE.fullmatch(line.decode("latin-1")) is not None
    if result == "error":
        assert dev.autoboot() == {"all": 2, "tryboot": 3} and calls == []
    else:
        assert valid
    assert not (dev.req / "request").exists()


# TrybootBootControl through the requester: the requester's pause runs the switch, as the path unit would


class PathUnit:
    """The requester's clock and sleep: each pause runs the switch on a waiting request (as
    umbra-boot-switch.path starts the service), and moves the clock on; no real time passes."""

    def __init__(self, dev: Device, alive: bool = True) -> None:
        self.dev, self.alive, self.now = dev, alive, 0.0
        self.reboots: list[list[str]] = []
        self.modes: list[int] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s
        request = self.dev.req / "request"
        if self.alive and request.exists():
            self.modes.append(request.stat().st_mode & 0o777)
            tryboot_switch.handle(self.dev.req, tryboot_switch.Switch(self.dev.boot, self.dev.dt,
                                                                      run=self.reboots.append))


def control(dev: Device, unit: PathUnit, timeout_s: float = 30.0) -> TrybootBootControl:
    req = SwitchRequester(dev.req, timeout_s, clock=unit.clock, sleep=unit.sleep)
    return TrybootBootControl(dev.boot, slot_root=dev.boot.parent / "slots", requester=req, device_tree=dev.dt)


def test_tryboot_control_installs_tries_and_commits_through_the_switch(tmp_path):
    dev = Device(tmp_path)
    unit = PathUnit(dev)
    boot = control(dev, unit)
    assert boot.active() == "a" and boot.inactive() == "b" and boot.state()["committed"] == "a"
    boot.try_next("b")
    assert dev.autoboot() == {"all": 2, "tryboot": 3} and unit.reboots == []
    assert unit.modes == [0o644]  # the umbra-boot user, not in the umbra group, reads the umbra user's request
    boot.boot()
    assert [" ".join(c) for c in unit.reboots] == [f"/usr/bin/busctl {SET_TRYBOOT}", f"/usr/bin/busctl {REBOOT}"]
    dev.booted(3)  # the firmware ran slot b once
    boot.mark_good()
    assert dev.autoboot() == {"all": 3, "tryboot": 3} and boot.state()["committed"] == "b"


def test_tryboot_control_rolls_back_through_the_switch(tmp_path):
    dev = Device(tmp_path, booted=3,
                 autoboot=b"[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n")
    unit = PathUnit(dev)
    control(dev, unit).rollback("health check failed")
    assert dev.autoboot() == {"all": 2, "tryboot": 2} and [" ".join(c) for c in unit.reboots] == [
        f"/usr/bin/busctl {REBOOT}"]


def test_a_refusal_is_a_boot_control_error_with_the_switch_s_reason(tmp_path):
    dev = Device(tmp_path)
    with pytest.raises(BootControlError, match="refused 'try': slot a is the committed one"):
        control(dev, PathUnit(dev)).try_next("a")
    with pytest.raises(BootControlError, match="refused 'boot': no slot to try"):
        control(dev, PathUnit(dev)).boot()


def test_no_answer_is_a_boot_control_error_after_the_timeout(tmp_path):
    dev = Device(tmp_path)
    unit = PathUnit(dev, alive=False)
    with pytest.raises(BootControlError, match="no answer from umbra-boot-switch.service within 5s"):
        control(dev, unit, timeout_s=5).try_next("b")
    assert 5.0 <= unit.now <= 5.5 and dev.autoboot() == {"all": 2, "tryboot": 2}


def test_a_request_folder_that_cannot_be_written_is_a_boot_control_error(tmp_path):
    dev = Device(tmp_path)
    (tmp_path / "not-a-folder").write_text("")
    req = SwitchRequester(tmp_path / "not-a-folder" / "umbra-boot", clock=lambda: 0.0, sleep=lambda s: None)
    boot = TrybootBootControl(dev.boot, requester=req, device_tree=dev.dt)
    with pytest.raises(BootControlError, match="cannot ask the boot switch"):
        boot.try_next("b")

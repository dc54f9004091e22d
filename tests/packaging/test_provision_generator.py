"""packaging/systemd/umbra-provision-generator, the systemd generator that decides whether the provisioning agent
is part of a boot: wanted by multi-user.target while the device is not locked, masked once it is locked or when
its state cannot be read (fail closed). Run here as systemd runs it (three output folders) in a tmp root, with its
test-only fourth argument naming the state folder; `systemctl --root` then says what systemd makes of the
output."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
GENERATOR = PACKAGING / "systemd" / "umbra-provision-generator"
UNIT = "umbra-provision.service"
WANTS = Path("multi-user.target.wants") / UNIT


class Boot:
    """A tmp root: the unit as the package installs it, the state folder, systemd's three generator folders."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "root"
        (self.root / "lib/systemd/system").mkdir(parents=True)
        shutil.copy(PACKAGING / "systemd" / UNIT, self.root / "lib/systemd/system" / UNIT)
        (self.root / "etc/systemd/system").mkdir(parents=True)
        self.state = self.root / "var/lib/umbra/provisioning"
        self.state.mkdir(parents=True)
        run = self.root / "run/systemd"
        self.normal, self.early, self.late = run / "generator", run / "generator.early", run / "generator.late"

    def write_state(self, state: str) -> None:
        # as provisioning.agent.DeviceAgent._save writes it
        (self.state / "state.json").write_text(json.dumps({"device_id": "umbra-0123abcd", "state": state},
                                                          sort_keys=True))

    def generate(self, *dirs: Path) -> subprocess.CompletedProcess:
        for d in (self.normal, self.early, self.late):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)  # systemd empties and makes them before each run
        args = dirs or (self.normal, self.early, self.late)
        out = subprocess.run(["/bin/sh", str(GENERATOR), *map(str, args), str(self.state)],
                             capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        assert out.returncode == 0, out.stderr  # a generator never fails the boot
        return out

    def made(self) -> dict[str, str]:
        """Every file or link the generator made: its path under /run/systemd -> the link's target ('' if none)."""
        base = self.normal.parent
        return {str(p.relative_to(base)): str(p.readlink()) if p.is_symlink() else ""
                for p in sorted(base.rglob("*")) if p.is_symlink() or p.is_file()}

    def is_enabled(self) -> str:
        out = subprocess.run(["systemctl", f"--root={self.root}", "is-enabled", UNIT], capture_output=True, text=True)
        return out.stdout.strip()


@pytest.fixture
def boot(tmp_path: Path) -> Boot:
    return Boot(tmp_path)


needs_systemctl = pytest.mark.skipif(shutil.which("systemctl") is None, reason="systemctl not installed")


@pytest.mark.parametrize("state", ["blank", "keyed", "certified", "configured"])
def test_an_unlocked_device_wants_the_agent_at_boot(boot, state):
    boot.write_state(state)
    out = boot.generate()
    assert boot.made() == {f"generator/{WANTS}": f"/lib/systemd/system/{UNIT}"}
    assert out.stderr == ""


def test_a_fresh_install_without_a_state_file_wants_the_agent(boot):
    boot.generate()
    assert boot.made() == {f"generator/{WANTS}": f"/lib/systemd/system/{UNIT}"}


def test_a_locked_device_masks_the_agent_ahead_of_etc(boot):
    boot.write_state("locked")
    out = boot.generate()
    assert boot.made() == {f"generator.early/{UNIT}": "/dev/null"}  # early: above /etc, so no admin link undoes it
    assert out.stderr == ""


@pytest.mark.parametrize("case", ["no state folder", "state.json a folder", "no state in it", "an unknown state",
                                  "not json"])
def test_a_state_that_cannot_be_read_masks_the_agent_with_one_line(boot, case):
    """Fail closed: a locked device whose state is not visible (a /var not mounted yet) offers no serial service."""
    p = boot.state / "state.json"
    if case == "no state folder":
        shutil.rmtree(boot.state)
    elif case == "state.json a folder":
        p.mkdir()
    elif case == "no state in it":
        p.write_text('{"device_id": "umbra-0123abcd"}')
    elif case == "an unknown state":
        boot.write_state("unlocked-please")
    else:
        p.write_bytes(b"\x00\xff garbage")
    out = boot.generate()
    assert boot.made() == {f"generator.early/{UNIT}": "/dev/null"}
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("umbra-provision-generator: ")
    assert lines[0].endswith(f"{UNIT} masked for this boot")


def test_one_output_folder_stands_for_all_three(tmp_path):
    """systemd.generator(7): called with one folder (as for tests), the generator writes all into it. Without the
    test-only state folder it reads /var/lib/umbra/provisioning, which is not on this machine: masked."""
    if Path("/var/lib/umbra/provisioning").exists():
        pytest.skip("this machine has a /var/lib/umbra/provisioning")
    out = subprocess.run(["/bin/sh", str(GENERATOR), str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0 and (tmp_path / UNIT).readlink() == Path("/dev/null")
    assert out.stderr == ("umbra-provision-generator: /var/lib/umbra/provisioning is not there (not mounted yet?): "
                          f"{UNIT} masked for this boot\n")


def test_no_output_folder_is_one_line_and_exit_0(boot):
    out = subprocess.run(["/bin/sh", str(GENERATOR)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr.startswith("usage: umbra-provision-generator NORMAL-DIR")


@needs_systemctl
def test_systemctl_sees_the_agent_enabled_until_the_lock_then_masked(boot):
    """What `systemctl is-enabled` makes of the generator's output, the unit as shipped (no [Install])."""
    assert boot.is_enabled() == "static"  # no generator run: nothing enables it, and nothing can
    boot.write_state("configured")
    boot.generate()
    assert boot.is_enabled() == "enabled-runtime"
    boot.write_state("locked")
    boot.generate()
    assert boot.is_enabled() == "masked-runtime"
    # a mask in the early folder holds against an admin's enablement link in /etc
    wants = boot.root / "etc/systemd/system" / WANTS
    wants.parent.mkdir(parents=True)
    wants.symlink_to(f"/lib/systemd/system/{UNIT}")
    assert boot.is_enabled() == "masked-runtime"


def test_the_generator_is_posix_sh_without_bashisms():
    text = GENERATOR.read_text()
    assert text.startswith("#!/bin/sh\n")
    if shutil.which("checkbashisms"):
        out = subprocess.run(["checkbashisms", str(GENERATOR)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    if shutil.which("dash"):
        assert subprocess.run(["dash", "-n", str(GENERATOR)]).returncode == 0

"""The slots on disk: a versioned virtual environment per slot, and the `current` link the units run from.

    /opt/umbra/slots/slot-a/<version>/     a venv: the Debian package's (a fresh install puts it in slot A; an
                                           upgrade replaces the committed slot's, never writing boot.json), or
    /opt/umbra/slots/slot-b/<version>/     the venv OTA built in the other slot (beside the release tree it came from)
    /opt/umbra/slots/boot.json             hal.boot.DirectoryBootControl's state: committed, trying, booted
    /opt/umbra/slots/current -> slot-a/<version>
    /opt/umbra/current -> slots/current    what the systemd units start (/opt/umbra/current/bin/umbra)

A release whose tree holds a wheelhouse (`wheelhouse/requirements.lock` and the wheels, as `bash
packaging/build.sh` ships it) is installed offline into a venv in the other slot (`install_venv`: every wheel
hash-checked, nothing fetched), built at its final path since venvs are not relocatable. `SlotLinks` is a
BootControl around the boot decision (hal.boot) that moves `current` whenever the booted slot changes: on
boot of a slot on trial, on its commit, and on a rollback after a failed health check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from hal.boot import BootControl, DirectoryBootControl, WrappedBoot
from ota.bundle import parse_version
from ota.errors import OtaError

LOCK = "requirements.lock"


def has_wheelhouse(tree: Path) -> bool:
    """A release tree that carries a wheelhouse and its hash lock (installed as a venv, not run as files)."""
    return (Path(tree) / "wheelhouse" / LOCK).is_file()


def _pip_env() -> dict[str, str]:
    """The lock alone decides what is installed: no pip config file, index or find-links of the machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def install_venv(wheelhouse: Path, venv: Path, python: str | None = None) -> Path:
    """A venv at `venv` (its final path) with the system site packages (picamera2 and libcamera come from the
    OS), holding exactly the wheels locked in `wheelhouse/requirements.lock`: offline (--no-index), every hash
    checked (--require-hashes), binary wheels only. On any failure nothing is left at `venv` and OtaError says
    why in one line (pip's last)."""
    wheelhouse, venv = Path(wheelhouse), Path(venv)
    lock = wheelhouse / LOCK
    if not lock.is_file():
        raise OtaError(f"{wheelhouse} has no {LOCK}: not a wheelhouse")
    shutil.rmtree(venv, ignore_errors=True)
    steps = [
        [python or sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index", "--no-cache-dir",
         "--disable-pip-version-check", "--ignore-installed", "--require-hashes", "--only-binary=:all:",
         "--find-links", str(wheelhouse), "-r", str(lock)],
    ]
    for cmd in steps:
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, env=_pip_env())
        except (subprocess.CalledProcessError, OSError) as e:
            shutil.rmtree(venv, ignore_errors=True)
            detail = _last_line(e.stderr or "") if isinstance(e, subprocess.CalledProcessError) else str(e)
            raise OtaError(f"installing {wheelhouse.name} into {venv}: {detail}") from e
    return venv


def slot_venv(slot_dir: Path) -> Path | None:
    """The venv in a slot folder (a `<version>` folder holding pyvenv.cfg); the newest if there are several."""
    found = [p for p in Path(slot_dir).glob("*/pyvenv.cfg")] if Path(slot_dir).is_dir() else []
    versions = []
    for cfg in found:
        try:
            versions.append((parse_version(cfg.parent.name), cfg.parent))
        except OtaError:
            continue
    return max(versions)[1] if versions else None


def relink(link: Path, target: Path) -> None:
    """Point `link` at `target` (relative), atomically: a reader sees the old target or the new one."""
    tmp = link.with_name(f".{link.name}.new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(target, link.parent))
    os.replace(tmp, link)
    fd = os.open(link.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SlotLinks(WrappedBoot):
    """A BootControl (the directory-backed one under root/slots by default) that keeps root/slots/current on
    the booted slot's venv and root/current on root/slots/current."""

    def __init__(self, root: Path, boot: BootControl | None = None) -> None:
        self.root = Path(root)
        super().__init__(boot if boot is not None else DirectoryBootControl(self.root / "slots"))

    def try_next(self, slot: str) -> None:
        if slot_venv(self.slot_path(slot)) is None:
            raise OtaError(f"slot {slot} holds no installed venv: not tried")
        self.inner.try_next(slot)

    def boot(self) -> str:
        slot = self.inner.boot()
        self.point_current()
        return slot

    def mark_good(self) -> None:
        self.inner.mark_good()
        self.point_current()

    def rollback(self, reason: str) -> None:
        self.inner.rollback(reason)
        self.point_current()

    def current(self) -> Path | None:
        link = self.root / "current"
        return link.resolve() if link.exists() else None

    def point_current(self) -> Path:
        """current -> the booted slot's venv. OtaError (and the links left as they were) if it has none."""
        slot = self.inner.active()
        venv = slot_venv(self.slot_path(slot))
        if venv is None:
            raise OtaError(f"slot {slot} holds no venv; current left on {self.current()}")
        slots_current = self.slot_path(slot).parent / "current"
        relink(slots_current, venv)
        if not (self.root / "current").is_symlink() or (self.root / "current").resolve() != venv:
            relink(self.root / "current", slots_current)
        return venv

"""A fake root for the package's maintainer scripts: a tmp folder standing in for / through $DPKG_ROOT, with the
system tools (systemd-sysusers, systemd-tmpfiles, deb-systemd-helper, chown) replaced by stubs that log their
calls; the venvs real (built offline from a wheelhouse of two small wheels, as on a device). Used by
test_maintainer_scripts.py and test_slots_lock.py (through the `installed` and `fake` fixtures of conftest.py)
and by the OTA process test_slots_lock.py starts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from hal.boot import DirectoryBootControl
from ota.slots import SlotLinks
from tests.ota.test_slots import wheelhouse

REPO = Path(__file__).resolve().parents[2]
DEBIAN = REPO / "packaging" / "debian"
SCRIPTS = ("preinst", "postinst", "prerm", "postrm")
N, N1 = "0.1.0-1", "0.1.0-2"  # the package versions; the probe wheel in each wheelhouse says which one runs
PROBE = {N: "1.0", N1: "1.1"}

STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$UMBRA_TEST_CALLS"
"""
# systemd-tmpfiles: make the `d` folders of the package's tmpfiles.d under --root, as the real one would
TMPFILES = STUB + """root="${1#--root=}"
grep '^d ' "$root/usr/lib/tmpfiles.d/umbra.conf" | while read -r _ path _; do mkdir -p "$root$path"; done
"""
# install: the real one, without -o/-g (no `umbra` user or group on this machine)
INSTALL = """#!/bin/sh
args=""
while [ $# -gt 0 ]; do
    case "$1" in -o|-g) shift 2 ;; *) args="$args $1"; shift ;; esac
done
exec /usr/bin/install $args
"""


def unprefixed_paths(text: str) -> list[str]:
    """Absolute paths of the system in a script's code that do not sit under $R ($DPKG_ROOT): each would act
    on this machine's / in a test (comments and /dev/null aside)."""
    path = re.compile(r"(?<![\w$}./-])/(opt|etc|var|run|usr|lib)/")
    return [line.strip() for line in text.splitlines()
            if not line.startswith("#!") and path.search(line.split("#", 1)[0])]


class FakeRoot:
    """`root` stands in for /; `dpkg_install` plays dpkg's sequence for an install or an upgrade."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.root = tmp, tmp / "root"
        self.root.mkdir()
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.calls = tmp / "calls.log"
        self.calls.touch()
        for tool in ("systemd-sysusers", "deb-systemd-helper", "deb-systemd-invoke", "systemctl", "chown"):
            self._stub(tool, STUB)
        self._stub("systemd-tmpfiles", TMPFILES)
        self._stub("install", INSTALL)
        (self.bin / "python3").symlink_to(sys.executable)
        self.installed: str | None = None

    @classmethod
    def copy_of(cls, other: FakeRoot, tmp: Path) -> FakeRoot:
        """A fresh fake root holding what `other` holds (its venvs run from the new place: python's own
        symlink is absolute, the slot links relative)."""
        new = cls(tmp)
        new.root.rmdir()
        shutil.copytree(other.root, new.root, symlinks=True)
        new.installed = other.installed
        return new

    def _stub(self, name: str, text: str) -> None:
        (self.bin / name).write_text(text)
        (self.bin / name).chmod(0o755)

    @property
    def opt(self) -> Path:
        return self.root / "opt" / "umbra"

    def links(self) -> SlotLinks:
        return SlotLinks(self.opt, DirectoryBootControl(self.opt / "slots"))

    def boot_state(self) -> dict:
        return json.loads((self.opt / "slots" / "boot.json").read_text())

    def script(self, name: str, version: str) -> Path | None:
        """As build.sh ships it: @VERSION@ filled in (None: the package has no such script)."""
        if not (DEBIAN / name).exists():
            return None
        out = self.tmp / "DEBIAN" / version / name
        out.parent.mkdir(parents=True, exist_ok=True)
        text = (DEBIAN / name).read_text()
        assert unprefixed_paths(text) == [], f"{name} would touch this machine's / in a test"
        out.write_text(text.replace("@VERSION@", version))
        out.chmod(0o755)
        return out

    def run(self, name: str, version: str, *args: str) -> subprocess.CompletedProcess:
        """One script as dpkg runs it; a script the package does not have succeeds, as in dpkg."""
        script = self.script(name, version)
        if script is None:
            return subprocess.CompletedProcess([name], 0, "", "")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env.update(DPKG_ROOT=str(self.root), UMBRA_TEST_CALLS=str(self.calls),
                   PATH=f"{self.bin}:{os.environ['PATH']}")
        return subprocess.run(["/bin/sh", str(script), *args], env=env,
                              capture_output=True, text=True)

    def unpack(self, version: str) -> None:
        """The package's files (what dpkg unpacks): the wheelhouse, the config template, tmpfiles.d."""
        usr = self.root / "usr"
        shutil.rmtree(usr / "lib" / "umbra", ignore_errors=True)
        wh = wheelhouse(self.tmp / "payload" / version, PROBE[version])
        shutil.copytree(wh, usr / "lib" / "umbra" / "wheelhouse")
        (usr / "share" / "umbra").mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "packaging" / "sensor.toml", usr / "share" / "umbra" / "sensor.toml.template")
        (usr / "lib" / "tmpfiles.d").mkdir(parents=True, exist_ok=True)
        shutil.copy(DEBIAN / "tmpfiles.conf", usr / "lib" / "tmpfiles.d" / "umbra.conf")

    def dpkg_install(self, version: str) -> subprocess.CompletedProcess:
        """dpkg -i: [old-prerm upgrade] new-preinst install|upgrade, unpack, [old-postrm upgrade], new-postinst
        configure [old]. Stops where dpkg stops: at the first script that fails (its result is returned)."""
        old = self.installed
        if old is not None:
            r = self.run("prerm", old, "upgrade", version)
            if r.returncode:
                return r
        r = self.run("preinst", version, *(("upgrade", old) if old else ("install",)))
        if r.returncode:
            return r
        self.unpack(version)
        if old is not None:
            r = self.run("postrm", old, "upgrade", version)
            if r.returncode:
                return r
        r = self.run("postinst", version, "configure", *((old,) if old else ()))
        if r.returncode == 0:
            self.installed = version
        return r

    def purge(self) -> None:
        """dpkg --purge: prerm remove, the files go, postrm remove, postrm purge."""
        assert self.installed is not None
        for name, arg in (("prerm", "remove"), (None, None), ("postrm", "remove"), ("postrm", "purge")):
            if name is None:
                shutil.rmtree(self.root / "usr")
                continue
            r = self.run(name, self.installed, arg)
            assert r.returncode == 0, r.stderr


def ok(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0, r.stdout + r.stderr


def ota_release(links: SlotLinks, slot: str, version: str) -> None:
    """What ota.client.OtaClient.install leaves in a slot: the release's tree (its wheelhouse, VERSION) and
    the venv `<slot>/<version>` (a stand-in holding pyvenv.cfg, as ota.slots.slot_venv finds a venv: a real
    one is built and run in tests/ota/test_slots.py), then the slot tried once."""
    where = links.slot_path(slot)
    wheelhouse(where, version)
    (where / "VERSION").write_text(version)
    (where / version).mkdir()
    (where / version / "pyvenv.cfg").write_text("home = /usr/bin\n")
    links.try_next(slot)

"""The package's maintainer scripts (packaging/debian/preinst, postinst, prerm, postrm) run as dpkg runs them,
against a fake root: a tmp folder standing in for / through $DPKG_ROOT, with the system tools (systemd-sysusers,
systemd-tmpfiles, deb-systemd-helper, chown) replaced by stubs that log their calls. The venvs are real (built
offline from a wheelhouse of two small wheels, every hash checked, as on a device), and the OTA side is the
real ota.slots.SlotLinks around hal.boot.DirectoryBootControl.

The rule (docs/INSTALL.md, "Package upgrade"): an upgrade replaces the venv of the COMMITTED slot in place and
never writes the boot state; while an OTA trial is pending it refuses, so it neither commits nor rolls back the
trial. Purge removes all of it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hal.boot import DirectoryBootControl
from ota.slots import SlotLinks, slot_venv
from tests.ota.test_slots import run_in, wheelhouse

pytestmark = pytest.mark.timeout(300)  # each venv is ~5-20 s on a loaded machine (ensurepip)

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


def ota_to_slot_b(fake: FakeRoot, commit: bool = True) -> SlotLinks:
    """An OTA update of release 2.0.0 into slot B: installed, booted on trial, committed (or still on trial)."""
    links = fake.links()
    ota_release(links, "b", "2.0.0")
    assert links.boot() == "b" and links.current() == links.slot_path("b") / "2.0.0"
    if commit:
        links.mark_good()
    return links


def running(fake: FakeRoot) -> str:
    return run_in(fake.opt / "current", "import slotprobe; print(slotprobe.VERSION)")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> FakeRoot:
    """Version N installed once (a venv is ~5-20 s); each test works on a copy."""
    fake = FakeRoot(tmp_path_factory.mktemp("installed"))
    ok(fake.dpkg_install(N))
    return fake


@pytest.fixture
def fake(installed, tmp_path) -> FakeRoot:
    return FakeRoot.copy_of(installed, tmp_path)


def test_install_then_upgrade_lands_in_slot_a_and_keeps_the_config(fake):
    st = fake.boot_state()
    assert st["committed"] == st["booted"] == "a" and st["trying"] is None
    assert (fake.opt / "current").readlink() == Path("slots/current")
    assert (fake.opt / "slots" / "current").readlink() == Path(f"slot-a/{N}") and running(fake) == "1.0"
    cfg = fake.root / "etc" / "umbra" / "sensor.toml"
    cfg.write_text(cfg.read_text() + "# the maker's change\n")
    ok(fake.dpkg_install(N1))
    assert fake.boot_state() == st and running(fake) == "1.1"
    assert sorted(p.name for p in (fake.opt / "slots" / "slot-a").iterdir()) == [N1]
    assert cfg.read_text().endswith("# the maker's change\n")


def test_an_upgrade_after_an_ota_to_slot_b_keeps_slot_b(fake):
    links = ota_to_slot_b(fake)
    before = fake.boot_state()
    assert before["committed"] == before["booted"] == "b"
    ok(fake.dpkg_install(N1))
    assert fake.boot_state() == before  # the boot state is OTA's: the package never writes it
    assert links.current() == links.slot_path("b") / N1 and running(fake) == "1.1"
    assert sorted(p.name for p in links.slot_path("b").iterdir()) == [N1]  # the release it replaced is gone
    assert slot_venv(links.slot_path("a")) == links.slot_path("a") / N  # the other slot untouched
    # and OTA goes on from there: the next release goes into A (not committed), tried and committed
    assert links.inactive() == "a"
    ota_release(links, "a", "3.0.0")
    assert links.boot() == "a" and links.current() == links.slot_path("a") / "3.0.0"
    links.mark_good()
    assert fake.boot_state()["committed"] == "a"


@pytest.mark.parametrize("booted", [False, True], ids=["installed-not-booted", "booted-on-trial"])
def test_an_upgrade_during_a_trial_neither_commits_nor_rolls_it_back(fake, booted):
    links = fake.links()
    if booted:
        ota_to_slot_b(fake, commit=False)
    else:
        ota_release(links, "b", "2.0.0")
    state = (fake.opt / "slots" / "boot.json").read_bytes()
    current = links.current()
    tree = sorted(str(p.relative_to(fake.opt)) for p in fake.opt.rglob("*") if "/lib/" not in str(p))

    r = fake.dpkg_install(N1)
    assert r.returncode != 0 and "trial" in r.stderr and "slot b" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1  # one line that says why and what to do
    assert (fake.opt / "slots" / "boot.json").read_bytes() == state and links.current() == current
    assert sorted(str(p.relative_to(fake.opt)) for p in fake.opt.rglob("*") if "/lib/" not in str(p)) == tree
    assert fake.installed == N  # dpkg keeps N: the preinst refused before anything was unpacked

    # a configure reached anyway (files unpacked, then the trial began: dpkg --configure -a) refuses the same
    fake.unpack(N1)
    r = fake.run("postinst", N1, "configure", N)
    assert r.returncode != 0 and "trial" in r.stderr
    assert (fake.opt / "slots" / "boot.json").read_bytes() == state and links.current() == current
    assert not (links.slot_path("a") / N1).exists() and not (links.slot_path("b") / N1).exists()

    # once the health check decides, the upgrade goes through, into whichever slot is committed then
    if booted:
        links.mark_good()
    else:
        links.boot()
        links.rollback("health check failed: camera")
    decided = fake.boot_state()
    ok(fake.dpkg_install(N1))
    assert fake.boot_state() == decided and running(fake) == "1.1"
    assert links.current() == links.slot_path(decided["committed"]) / N1


@pytest.mark.parametrize("text", ["", "{", '{"committed": "c", "trying": null, "booted": "c"}',
                                  '{"committed": "a", "trying": null, "booted": "b"}'])
def test_an_unreadable_or_incoherent_boot_state_is_never_overwritten(fake, text):
    (fake.opt / "slots" / "boot.json").write_text(text)
    r = fake.dpkg_install(N1)
    assert r.returncode != 0 and "boot state" in r.stderr
    assert (fake.opt / "slots" / "boot.json").read_text() == text


def test_purge_after_an_ota_removes_both_slots_the_config_and_the_state(fake):
    ota_to_slot_b(fake)
    ok(fake.dpkg_install(N1))
    prov = fake.root / "var" / "lib" / "umbra" / "provisioning"
    (prov / "device.key").write_text("the device's own key")
    for run in ("umbra", "umbra-ota"):
        (fake.root / "run" / run).mkdir(parents=True)
    fake.purge()
    left = sorted(str(p.relative_to(fake.root)) for p in fake.root.rglob("*"))
    assert left == ["etc", "opt", "run", "var", "var/lib"]  # empty folders the base system has anyway
    calls = fake.calls.read_text()
    assert "deb-systemd-helper purge umbra.service" in calls


def test_the_preinst_and_the_postinst_read_the_boot_state_alike():
    def checks(name: str) -> list[str]:
        """Every python heredoc of the script: the boot state's check and the slots lock's path."""
        return sorted(re.findall(r"<<'PY'\n(.*?)\nPY\n", (DEBIAN / name).read_text(), re.S))

    assert len(checks("preinst")) == 2 and checks("preinst") == checks("postinst")


def test_no_maintainer_script_reaches_outside_dpkg_root():
    for name in SCRIPTS:
        if (DEBIAN / name).exists():
            assert unprefixed_paths((DEBIAN / name).read_text()) == [], name
    assert unprefixed_paths('rm -rf /opt/umbra\n[ -d "$R/run/x" ] >/dev/null # /etc/x\n') == ["rm -rf /opt/umbra"]

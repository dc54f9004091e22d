"""The package's maintainer scripts (packaging/debian/preinst, postinst, prerm, postrm) run as dpkg runs them,
against a fake root: a tmp folder standing in for / through $DPKG_ROOT, with the system tools (systemd-sysusers,
systemd-tmpfiles, deb-systemd-helper, chown) replaced by stubs that log their calls. The venvs are real (built
offline from a wheelhouse of two small wheels, every hash checked, as on a device), and the OTA side is the
real ota.slots.SlotLinks around hal.boot.DirectoryBootControl.

The rule (docs/INSTALL.md, "Package upgrade"): an upgrade replaces the venv of the COMMITTED slot in place and
never writes the boot state; while an OTA trial is pending it refuses, so it neither commits nor rolls back the
trial. Purge removes all of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ota.slots import SlotLinks, slot_venv
from tests.ota.test_slots import run_in
from tests.packaging.fakeroot import DEBIAN, N1, SCRIPTS, FakeRoot, N, ok, ota_release, unprefixed_paths

pytestmark = pytest.mark.timeout(300)  # each venv is ~5-20 s on a loaded machine (ensurepip)


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


AGENT = "umbra-provision.service"


def test_the_scripts_never_enable_or_mask_the_agent_and_an_upgrade_drops_the_old_links(installed, fake):
    """The agent's enablement is the generator's alone (umbra-provision-generator: wanted until the lock, masked
    after): no deb-systemd-helper enable or mask of it, on install or upgrade, locked or not. An upgrade purges
    what an older package's deb-systemd-helper made for it (WantedBy= links, an /etc mask)."""
    first = installed.calls.read_text()  # the fresh install that `fake` is a copy of
    (fake.root / "var/lib/umbra/provisioning/state.json").write_text('{"device_id": "umbra-1", "state": "locked"}')
    fake.calls.write_text("")
    ok(fake.dpkg_install(N1))
    upgrade = fake.calls.read_text()
    for calls in (first, upgrade):
        assert not re.search(rf"deb-systemd-helper (enable|mask|update-state|was-enabled).* {AGENT}", calls)
        assert not re.search(rf"deb-systemd-invoke .*{AGENT}", calls)
    assert "deb-systemd-helper enable umbra.service" in first
    assert f"deb-systemd-helper purge {AGENT}" not in first
    assert f"deb-systemd-helper purge {AGENT}" in upgrade and f"deb-systemd-helper unmask {AGENT}" in upgrade


@pytest.mark.parametrize("wanted, policy, started", [(True, None, True), (True, 0, True), (True, 104, True),
                                                      (True, 101, False), (False, None, False)])
def test_on_a_running_system_the_agent_starts_when_the_generator_wants_it(fake, wanted, policy, started):
    """deb-systemd-invoke starts no unit without [Install]: the postinst starts the agent itself when the
    generator's run at its daemon-reload wanted it (the device is not locked), as policy-rc.d allows."""
    run = fake.root / "run/systemd"
    (run / "system").mkdir(parents=True)
    if wanted:
        (run / "generator/multi-user.target.wants").mkdir(parents=True)
        (run / "generator/multi-user.target.wants" / AGENT).symlink_to(f"/lib/systemd/system/{AGENT}")
    if policy is not None:
        rc = fake.root / "usr/sbin/policy-rc.d"
        rc.parent.mkdir(parents=True, exist_ok=True)
        rc.write_text(f"#!/bin/sh\nexit {policy}\n")
        rc.chmod(0o755)
    fake.calls.write_text("")
    ok(fake.dpkg_install(N1))
    calls = fake.calls.read_text()
    assert "systemctl --system daemon-reload" in calls
    assert (f"systemctl --system --no-block restart {AGENT}" in calls) == started

"""The package's postinst and an OTA step race for the slots, as two real processes: the postinst run as dpkg runs
it against a fake root (tests/packaging/fakeroot.py's FakeRoot: real venvs, $DPKG_ROOT), the OTA
side a python process driving the real ota.slots.SlotLinks through ota.lock.LockedBoot on the same lock file
([ota] lock_file's default, [device] state_dir/slots.lock). Whichever comes second waits for the first, and the
boot state and `current` agree at the end: `current` is in the slot boot.json says is booted.

Each test waits on files the two processes write (no sleeps, no timings): the OTA process's lock tells when it
starts waiting through its injected `sleep`, and the postinst's stand-in `ln` (its first call is the switch of
`current`) stops there until told to go on, which is the window issue 19 names. On the code before the lock the
OTA step runs through that window: `current` ends in slot A while boot.json says B booted (the first test fails).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.packaging.fakeroot import N1, FakeRoot, N, ok

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]

# the OTA side: under the slots lock, install release 2.0.0 into slot B (tree, venv stand-in, try) and boot it
# on trial, which moves `current` to B; `hold` first takes the lock and keeps it until `go` exists
OTA = """
import sys, time
from pathlib import Path
from hal.boot import DirectoryBootControl
from ota.lock import LockedBoot, SlotLock
from ota.slots import SlotLinks
from tests.packaging.fakeroot import ota_release

opt, lock_file, signals, hold = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] == "hold"

def wait_for(name):
    while not (signals / name).exists():
        time.sleep(0.01)

def waiting(s):
    (signals / "ota-waiting").touch()
    time.sleep(s)

lock = SlotLock(lock_file, 120, poll_s=0.02, sleep=waiting)
boot = LockedBoot(SlotLinks(opt, DirectoryBootControl(opt / "slots")), lock)
with lock:
    (signals / "ota-holds").touch()
    if hold:
        wait_for("go")
    ota_release(boot, "b", "2.0.0")
    assert boot.boot() == "b"
(signals / "ota-done").touch()
"""

# the postinst's `ln`: its first call (the switch of `current`) waits for `go`
LN = """#!/bin/sh
if [ ! -e "$UMBRA_TEST_SIGNALS/ln-reached" ]; then
    touch "$UMBRA_TEST_SIGNALS/ln-reached"
    while [ ! -e "$UMBRA_TEST_SIGNALS/go" ]; do sleep 0.01; done
fi
exec /bin/ln "$@"
"""


@pytest.fixture
def fake(fake: FakeRoot) -> FakeRoot:  # conftest.py's copy of version N installed
    fake.unpack(N1)  # dpkg has unpacked N+1; its postinst configure comes next
    return fake


STARTED: list[tuple[subprocess.Popen, Path]] = []  # (process, its signals folder), ended at each test's end


@pytest.fixture(autouse=True)
def _end_processes() -> Iterator[None]:
    """A test that fails midway leaves no process waiting for its `go`: told to go on, then killed."""
    yield
    while STARTED:
        proc, sig = STARTED.pop()
        (sig / "go").touch()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def lock_file(fake: FakeRoot) -> Path:
    return fake.root / "var" / "lib" / "umbra" / "slots.lock"


def signals(fake: FakeRoot) -> Path:
    s = fake.tmp / "signals"
    s.mkdir(exist_ok=True)
    return s


def start_ota(fake: FakeRoot, hold: bool) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", OTA, str(fake.opt), str(lock_file(fake)), str(signals(fake)),
                             "hold" if hold else "go"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    STARTED.append((proc, signals(fake)))
    return proc


def start_postinst(fake: FakeRoot, **env: str) -> tuple[subprocess.Popen, Path]:
    script = fake.script("postinst", N1)
    assert script is not None
    err = fake.tmp / "postinst.err"
    full = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    full.update(DPKG_ROOT=str(fake.root), UMBRA_TEST_CALLS=str(fake.calls), UMBRA_TEST_SIGNALS=str(signals(fake)),
                PATH=f"{fake.bin}:{os.environ['PATH']}", **env)
    with err.open("w") as f:
        proc = subprocess.Popen(["/bin/sh", str(script), "configure", N], env=full, stdout=subprocess.DEVNULL,
                                stderr=f, text=True)
    STARTED.append((proc, signals(fake)))
    return proc, err


def wait_until(check, *procs: subprocess.Popen) -> None:
    """Until `check()` holds; fails at once if one of `procs` has ended meanwhile (and `check` still fails)."""
    while not check():
        for p in procs:
            if p.poll() is not None and not check():
                out = p.communicate()
                pytest.fail(f"{p.args[:2]} ended (rc {p.returncode}) first: {out}")
        time.sleep(0.01)


def consistent(fake: FakeRoot) -> tuple[str, Path]:
    """The booted slot and where `current` leads; `current` must be a venv in the booted slot."""
    st = fake.boot_state()
    current = (fake.opt / "current").resolve()
    assert current.parent == fake.opt / "slots" / f"slot-{st['booted']}", (st, current)
    assert (current / "pyvenv.cfg").exists()
    return st["booted"], current


def test_an_ota_trial_cannot_begin_between_the_postinsts_look_and_its_switch(fake):
    fake._stub("ln", LN)
    sig = signals(fake)
    post, err = start_postinst(fake)
    wait_until(lambda: (sig / "ln-reached").exists(), post)  # looked at boot.json (no trial), about to switch
    ota = start_ota(fake, hold=False)
    # the OTA step must wait for the postinst's lock; before the lock it ran through and finished here
    wait_until(lambda: (sig / "ota-waiting").exists() or (sig / "ota-done").exists(), ota)
    assert fake.boot_state()["trying"] is None
    (sig / "go").touch()
    assert post.wait() == 0, err.read_text()
    assert ota.wait() == 0, ota.communicate()
    assert (sig / "ota-waiting").exists()
    # the package's switch came first (N+1 in the committed slot A), then OTA's trial of B, booted
    booted, current = consistent(fake)
    assert booted == "b" and current == fake.opt / "slots" / "slot-b" / "2.0.0"
    assert (fake.opt / "slots" / "slot-a" / N1 / "pyvenv.cfg").exists()
    assert fake.boot_state()["trying"] == "b" and fake.boot_state()["committed"] == "a"


def test_a_postinst_waits_for_an_ota_step_then_refuses_the_trial_it_began(fake):
    sig = signals(fake)
    ota = start_ota(fake, hold=True)
    wait_until(lambda: (sig / "ota-holds").exists(), ota)
    state, current = fake.boot_state(), (fake.opt / "current").resolve()
    post, err = start_postinst(fake)
    wait_until(lambda: "waiting up to 300s for" in err.read_text(), post)  # it waits: not failed, not switched
    assert fake.boot_state() == state and (fake.opt / "current").resolve() == current
    (sig / "go").touch()
    assert ota.wait() == 0, ota.communicate()
    rc = post.wait()
    lines = err.read_text().strip().splitlines()
    assert rc != 0 and len(lines) == 2 and "waiting" in lines[0]
    assert "an OTA trial of slot b is pending" in lines[1]
    booted, current = consistent(fake)  # OTA's trial, untouched by the package
    assert booted == "b" and current == fake.opt / "slots" / "slot-b" / "2.0.0"
    assert not (fake.opt / "slots" / "slot-a" / N1).exists()  # the venv it built is gone again


def test_a_postinst_gives_up_after_its_wait_and_changes_nothing(fake):
    sig = signals(fake)
    ota = start_ota(fake, hold=True)
    try:
        wait_until(lambda: (sig / "ota-holds").exists(), ota)
        state, current = fake.boot_state(), (fake.opt / "current").resolve()
        post, err = start_postinst(fake, UMBRA_SLOTS_LOCK_WAIT="1")
        rc = post.wait()
        lines = err.read_text().strip().splitlines()
        assert rc == 1 and len(lines) == 2 and "waiting up to 1s" in lines[0]
        assert "still held after 1s" in lines[1] and "nothing was changed" in lines[1]
        assert fake.boot_state() == state and (fake.opt / "current").resolve() == current
        assert not (fake.opt / "slots" / "slot-a" / N1).exists()
    finally:
        (sig / "go").touch()
        ota.wait()


def test_the_preinst_waits_for_an_ota_step_and_sees_its_trial(fake):
    sig = signals(fake)
    ota = start_ota(fake, hold=True)
    wait_until(lambda: (sig / "ota-holds").exists(), ota)
    script = fake.script("preinst", N1)
    assert script is not None
    err = fake.tmp / "preinst.err"
    env = {**os.environ, "DPKG_ROOT": str(fake.root), "PATH": f"{fake.bin}:{os.environ['PATH']}"}
    with err.open("w") as f:
        pre = subprocess.Popen(["/bin/sh", str(script), "upgrade", N], env=env, stderr=f)
    STARTED.append((pre, sig))
    wait_until(lambda: "waiting up to" in err.read_text(), pre)
    (sig / "go").touch()
    assert ota.wait() == 0
    assert pre.wait() != 0 and "an OTA trial of slot b is pending" in err.read_text()


def test_the_scripts_lock_the_file_the_ota_config_names(fake):
    """[ota] lock_file, else [device] state_dir/slots.lock, under $DPKG_ROOT: as firmware.config expands it."""
    from firmware.config import parse

    cfg_file = fake.root / "etc" / "umbra" / "sensor.toml"
    cases = {
        "": "/var/lib/umbra/slots.lock",
        '[device]\nstate_dir = "/srv/umbra"\n': "/srv/umbra/slots.lock",
        '[device]\nstate_dir = "/srv/umbra"\n[ota]\nlock_file = "{state_dir}/x.lock"\n': "/srv/umbra/x.lock",
        '[ota]\nlock_file = "/run/umbra-slots.lock"\n': "/run/umbra-slots.lock",
    }
    script = fake.script("postinst", N1)
    assert script is not None
    text = script.read_text()
    probe = fake.tmp / "probe.sh"
    probe.write_text('set -e\nR="$DPKG_ROOT"\n' + text[text.index("slots_lock_file() {"):text.index(
        "take_slots_lock() {")] + "slots_lock_file\n")
    for toml, want in cases.items():
        cfg_file.write_text(toml)
        got = subprocess.run(["/bin/sh", str(probe)], env={**os.environ, "DPKG_ROOT": str(fake.root)},
                             capture_output=True, text=True, check=True).stdout.strip()
        assert got == str(fake.root) + want, toml
        if toml:  # the firmware's own reading of the same file
            table = parse(toml + ("" if "state_dir" in toml else '[device]\nstate_dir = "/var/lib/umbra"\n'))
            assert table.ota.lock_file == want


def test_the_package_makes_the_lock_file_for_the_umbra_user():
    text = (REPO / "packaging" / "debian" / "tmpfiles.conf").read_text()
    assert "f /var/lib/umbra/slots.lock 0640 umbra umbra -" in text.splitlines()


def test_the_postinst_holds_no_lock_after_it_ends(fake):
    ok(fake.run("postinst", N1, "configure", N))
    lf = lock_file(fake)
    assert lf.exists()
    r = subprocess.run(["flock", "-n", str(lf), "true"], capture_output=True)
    assert r.returncode == 0
    assert json.loads((fake.opt / "slots" / "boot.json").read_text())["committed"] == "a"

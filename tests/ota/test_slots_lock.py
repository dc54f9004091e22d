"""ota.lock: the slots lock the OTA client shares with the package's scripts. The other holder here is util-linux
`flock` in a real process (what the postinst runs); waits run on an injected clock, never on real time."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from bench.lib.ota_site import Site
from ota.agent import check_and_install
from ota.client import OtaClient
from ota.lock import LockedBoot, SlotLock, SlotsBusy


class Ticks:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now, self.slept = 0.0, 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s
        self.slept += 1


class ShellHolder:
    """`flock FILE cat`: holds the lock until its stdin closes (as the postinst holds fd 9 until it is done)."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(["flock", str(path), "sh", "-c", "echo held; cat >/dev/null"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "held\n"

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait() == 0


def lock(path: Path, timeout_s: float = 5.0) -> tuple[SlotLock, Ticks]:
    t = Ticks()
    return SlotLock(path, timeout_s, poll_s=0.5, clock=t, sleep=t.sleep), t


def test_a_lock_held_by_another_process_is_waited_for_then_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "state" / "slots.lock"
    path.parent.mkdir()
    holder = ShellHolder(path)
    try:
        lk, t = lock(path)
        with pytest.raises(SlotsBusy, match=r"slots.lock is still held after 5s .* try again once it is done"):
            with lk:
                pass
        assert t.slept == 10 and lk.waited == 1 and not lk.held
    finally:
        holder.release()
    with lk:  # free again: taken at once
        assert lk.held
        # and the shell cannot take it meanwhile (what the postinst sees)
        assert subprocess.run(["flock", "-n", str(path), "true"]).returncode == 1
    assert subprocess.run(["flock", "-n", str(path), "true"]).returncode == 0


def test_the_lock_is_reentrant_in_a_process_and_threads_take_turns(tmp_path):
    lk = SlotLock(tmp_path / "slots.lock")
    order: list[str] = []
    with lk:
        with lk:  # install() holds it and calls boot.try_next(), which takes it again
            assert lk.held
        assert lk.held
        th = threading.Thread(target=lambda: (lk.__enter__(), order.append("thread"), lk.__exit__(None, None, None)))
        th.start()
        th.join(0.05)
        order.append("main")
    th.join()
    assert order == ["main", "thread"] and not lk.held


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.close()


def locked_client(site: Site, lk: SlotLock) -> OtaClient:
    c = site.client()
    return OtaClient(c.config, c.dir, site.root, site.fetcher, site.boot, lock=lk)


def test_an_install_while_the_package_holds_the_lock_is_held_and_changes_no_slot(site, tmp_path):
    site.publish("2.0.0")
    path = tmp_path / "slots.lock"
    lk, _ = lock(path)
    client = locked_client(site, lk)
    assert isinstance(client.boot, LockedBoot)
    state = site.boot.state()
    holder = ShellHolder(path)
    reports: list[dict] = []
    try:
        assert check_and_install(client, reports.append) is None
    finally:
        holder.release()
    assert reports[-1]["result"] == "held" and "still held" in reports[-1]["reason"]
    assert site.boot.state() == state and not (site.boot.slot_path("b") / "VERSION").exists()
    # once the package is done, the next check installs and tries it
    assert check_and_install(client, reports.append) == "2.0.0"
    assert site.boot.state()["trying"] == "b" and not lk.held


@pytest.mark.parametrize("step", ["boot", "mark_good", "rollback"])
def test_switch_commit_and_rollback_wait_for_the_lock_too(site, tmp_path, step):
    path = tmp_path / "slots.lock"
    lk, _ = lock(path)
    boot = LockedBoot(site.boot, lk)
    site.boot.try_next("b")
    if step != "boot":
        site.boot.boot()
    state = site.boot.state()
    holder = ShellHolder(path)
    try:
        with pytest.raises(SlotsBusy):
            getattr(boot, step)(*(["health check failed"] if step == "rollback" else []))
    finally:
        holder.release()
    assert site.boot.state() == state
    getattr(boot, step)(*(["health check failed"] if step == "rollback" else []))
    assert site.boot.state() != state

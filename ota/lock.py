"""The one lock over the slots: an advisory flock(2) on a file under the device's state dir (by default
`[device] state_dir`/slots.lock, /var/lib/umbra/slots.lock on a packaged device).

Whatever reads the boot state and then acts on it takes it: the OTA client around install (inactive slot, unpack,
venv, try), the switch of `current` on boot, commit and rollback (`LockedBoot`), and the Debian package's preinst
and postinst around their check of the boot state and their switch of `current` (`flock` from util-linux, the same
flock(2) lock: packaging/debian/postinst). So an OTA trial cannot begin between the package's last look at
boot.json and its switch of `current`, nor the package switch `current` under a trial (docs/INSTALL.md,
"Package upgrade and OTA: one lock").

A holder that takes long (the other side builds a venv: seconds to a minute on a Pi) is waited for, up to
`timeout_s`; past it, `SlotsBusy` says who to wait for. flock locks belong to an open file, so two opens in one
process would exclude each other: `SlotLock` is re-entrant within a process (its depth counted under an RLock),
and threads of one process take turns on it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from hal.boot import BootControl, WrappedBoot
from ota.errors import Held

log = logging.getLogger(__name__)

WAIT_S = 300.0  # the package's scripts wait as long (packaging/debian/postinst, UMBRA_SLOTS_LOCK_WAIT)


class SlotsBusy(Held):
    """The slots lock stayed held past the timeout: an OTA step not made now (reported "held", tried again at
    the next check), never a half-made one."""


class SlotLock:
    """An exclusive flock on `path` (created, mode 0640, if missing), waited for up to `timeout_s`: polled every
    `poll_s` on `clock`, pausing with `sleep` (both injectable, so tests wait on no real time)."""

    def __init__(self, path: Path, timeout_s: float = WAIT_S, *, poll_s: float = 0.2,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.path, self.timeout_s, self.poll_s = Path(path), timeout_s, poll_s
        self.clock, self.sleep = clock, sleep
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self.waited = 0  # acquisitions that found the lock held by another process and waited

    def __enter__(self) -> SlotLock:
        self._mutex.acquire()
        try:
            if self._depth == 0:
                self._fd = self._take()
            self._depth += 1
        except BaseException:
            self._mutex.release()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fd, self._fd = self._fd, None
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        finally:
            self._mutex.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _take(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # read-only is enough for flock(2), and lets the umbra user lock a file root created (the preinst's)
        fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            deadline: float | None = None
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    now = self.clock()
                    if deadline is None:
                        deadline = now + self.timeout_s
                        self.waited += 1
                        log.info("waiting up to %gs for %s (a package install or another OTA step holds it)",
                                 self.timeout_s, self.path)
                    elif now >= deadline:
                        raise SlotsBusy(f"{self.path} is still held after {self.timeout_s:g}s (a package install "
                                        "or another OTA step): the slots are left as they are; try again once "
                                        "it is done") from None
                    self.sleep(self.poll_s)
        except BaseException:
            os.close(fd)
            raise


class LockedBoot(WrappedBoot):
    """A BootControl whose changes (try, boot, commit, rollback) each run under the slots lock; reads pass
    through (boot.json is written atomically)."""

    def __init__(self, inner: BootControl, lock: SlotLock) -> None:
        super().__init__(inner)
        self.lock = lock

    def try_next(self, slot: str) -> None:
        with self.lock:
            self.inner.try_next(slot)

    def boot(self) -> str:
        with self.lock:
            return self.inner.boot()

    def mark_good(self) -> None:
        with self.lock:
            self.inner.mark_good()

    def rollback(self, reason: str) -> None:
        with self.lock:
            self.inner.rollback(reason)

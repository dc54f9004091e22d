"""A/B slots and the boot decision, at the hardware boundary.

`BootControl` is what the installer needs: which slot runs, write a slot, try the other one once on the next
boot, mark the running slot good, and fall back. `DirectoryBootControl` keeps two slot folders and a state
file (written atomically) for bench runs and tests; `TrybootBootControl` drives the Raspberry Pi firmware's
tryboot A/B (autoboot.txt + `reboot '0 tryboot'`), where a failed try falls back by itself; its changes are
asked of the privileged boot switch (hal.tryboot_switch, `umbra-boot-switch.service`) by a `SwitchRequester`.
Every failure to read or change the boot state is a `BootControlError`.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from hal import tryboot_switch
from hal.errors import BootControlError
from trust.files import write_atomic

log = logging.getLogger(__name__)

SLOTS = ("a", "b")


class BootControl(Protocol):
    def active(self) -> str: ...

    def inactive(self) -> str: ...

    def slot_path(self, slot: str) -> Path: ...

    def try_next(self, slot: str) -> None: ...

    def boot(self) -> str: ...

    def mark_good(self) -> None: ...

    def rollback(self, reason: str) -> None: ...

    def state(self) -> dict: ...


class WrappedBoot:
    """A BootControl around another (`inner`): the reads pass through; a subclass adds to the changes."""

    def __init__(self, inner: BootControl) -> None:
        self.inner = inner

    def active(self) -> str:
        return self.inner.active()

    def inactive(self) -> str:
        return self.inner.inactive()

    def slot_path(self, slot: str) -> Path:
        return self.inner.slot_path(slot)

    def state(self) -> dict:
        return self.inner.state()


class DirectoryBootControl:
    """root/slot-a, root/slot-b and root/boot.json: {"committed": "a", "trying": null|"b", "tries": 0,
    "last_rollback": null}. `boot()` is what the bootloader does at power-on: a slot marked to try runs once;
    if it is still not marked good at the next boot, the committed slot runs again."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        for s in SLOTS:
            (self.root / f"slot-{s}").mkdir(exist_ok=True)
        self._file = self.root / "boot.json"
        if not self._file.exists():
            self._save({"committed": "a", "trying": None, "booted": "a", "tries": 0, "last_rollback": None})

    def state(self) -> dict:
        return json.loads(self._file.read_text())

    def _save(self, st: dict) -> None:
        write_atomic(self._file, json.dumps(st, sort_keys=True).encode())

    def active(self) -> str:
        return self.state()["booted"]

    def inactive(self) -> str:
        return "b" if self.state()["committed"] == "a" else "a"

    def slot_path(self, slot: str) -> Path:
        if slot not in SLOTS:
            raise BootControlError(f"no slot {slot!r}")
        return self.root / f"slot-{slot}"

    def try_next(self, slot: str) -> None:
        st = self.state()
        if slot == st["committed"]:
            raise BootControlError(f"slot {slot} is the committed one; install into the other")
        st.update(trying=slot, tries=0)
        self._save(st)

    def boot(self) -> str:
        st = self.state()
        if st["trying"] and st["tries"] == 0:
            st.update(booted=st["trying"], tries=1)
        else:
            if st["trying"]:  # tried once and never marked good: the bootloader falls back by itself
                st["last_rollback"] = f"slot {st['trying']} was not marked good after its try"
            st.update(booted=st["committed"], trying=None, tries=0)
        self._save(st)
        return st["booted"]

    def mark_good(self) -> None:
        st = self.state()
        st.update(committed=st["booted"], trying=None, tries=0)
        self._save(st)

    def rollback(self, reason: str) -> None:
        st = self.state()
        st.update(booted=st["committed"], trying=None, tries=0, last_rollback=reason)
        self._save(st)


class SwitchRequester:
    """Asks the `umbra-boot-switch` unit (hal.tryboot_switch, the umbra-boot user) for one change and waits for
    its answer: writes `<id> <action>[ <slot>]` atomically into `request_dir/request` (mode 0644: that user is
    not in the umbra group) and polls `request_dir/result` for `<id> ok` every `poll_s` on `clock`,
    pausing with `sleep` (both injectable), up to `timeout_s`. A refusal or no answer is a BootControlError."""

    def __init__(self, request_dir: Path = tryboot_switch.REQUEST_DIR, timeout_s: float = 30.0, *,
                 poll_s: float = 0.2, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.request_dir, self.timeout_s, self.poll_s = Path(request_dir), timeout_s, poll_s
        self.clock, self.sleep = clock, sleep

    def __call__(self, action: str, slot: str | None = None) -> None:
        rid = secrets.token_hex(16)
        line = f"{rid} {action}" + (f" {slot}" if slot else "")
        try:
            write_atomic(self.request_dir / "request", (line + "\n").encode(), mode=0o644)
        except OSError as e:
            raise BootControlError(f"cannot ask the boot switch ({self.request_dir}): {e.strerror}") from e
        deadline = self.clock() + self.timeout_s
        while True:
            try:
                answer = (self.request_dir / "result").read_text().strip()
            except OSError:
                answer = ""
            if answer.startswith(rid + " "):
                verdict = answer[len(rid) + 1:]
                if verdict == "ok":
                    return
                raise BootControlError(f"the boot switch refused {action!r}: {verdict.removeprefix('error: ')}")
            if self.clock() >= deadline:
                raise BootControlError(f"no answer from umbra-boot-switch.service within {self.timeout_s:g}s "
                                       f"to {line!r} (is umbra-boot-switch.path enabled?)")
            self.sleep(self.poll_s)


Requester = Callable[..., None]


class TrybootBootControl:
    """Raspberry Pi 4/5 firmware A/B: autoboot.txt names the committed partition under [all] and the one to
    try under [tryboot]; `reboot '0 tryboot'` boots the latter once, and any later reboot the former. Reads
    are direct (autoboot.txt and the device tree are world-readable); every change (try, the tryboot reboot,
    commit, rollback) is asked of the privileged boot switch through `requester` (default: a SwitchRequester
    on /run/umbra-boot), since this process may neither write the boot partition nor reboot."""

    def __init__(self, boot_dir: Path = tryboot_switch.BOOT_DIR, partitions: dict[str, int] | None = None,
                 slot_root: Path = Path("/slots"), requester: Requester | None = None,
                 device_tree: Path = tryboot_switch.DEVICE_TREE) -> None:
        self.boot_dir = Path(boot_dir)
        self.partitions = partitions or dict(tryboot_switch.PARTITIONS)
        self.slot_root = Path(slot_root)
        self.request = requester or SwitchRequester()
        self.device_tree = Path(device_tree)

    def _slot_of(self, partition: int) -> str:
        try:
            return tryboot_switch.slot_of(self.partitions, partition)
        except tryboot_switch.SwitchError as e:
            raise BootControlError(str(e)) from e

    def state(self) -> dict:
        try:
            ab = tryboot_switch.parse_autoboot((self.boot_dir / "autoboot.txt").read_text())
        except (OSError, tryboot_switch.SwitchError) as e:
            raise BootControlError(f"cannot read {self.boot_dir / 'autoboot.txt'}: {e}") from e
        tryboot = self.device_tree / "tryboot"
        trying = tryboot.exists() and tryboot.read_bytes()[-1:] == b"\x01"
        return {"committed": self._slot_of(ab["all"]), "tryboot": self._slot_of(ab["tryboot"]),
                "trying_now": trying}

    def active(self) -> str:
        try:
            return self._slot_of(tryboot_switch.booted_partition(self.device_tree))
        except tryboot_switch.SwitchError as e:
            raise BootControlError(str(e)) from e

    def inactive(self) -> str:
        return "b" if self.state()["committed"] == "a" else "a"

    def slot_path(self, slot: str) -> Path:
        if slot not in SLOTS:
            raise BootControlError(f"no slot {slot!r}")
        return self.slot_root / slot

    def try_next(self, slot: str) -> None:
        if slot not in SLOTS:
            raise BootControlError(f"no slot {slot!r}")
        self.request("try", slot)

    def boot(self) -> str:
        self.request("boot")  # the switch reboots with '0 tryboot': the firmware tries the [tryboot] partition once
        return self.active()

    def mark_good(self) -> None:
        self.request("commit", self.active())

    def rollback(self, reason: str) -> None:
        log.warning("rolling back to the committed slot: %s", reason)
        self.request("rollback")  # [tryboot] back to the committed slot, then a plain reboot

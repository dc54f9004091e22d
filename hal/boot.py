"""A/B slots and the boot decision, at the hardware boundary.

`BootControl` is what the installer needs: which slot runs, write a slot, try the other one once on the next
boot, mark the running slot good, and fall back. `DirectoryBootControl` keeps two slot folders and a state
file (written atomically) for bench runs and tests; `TrybootBootControl` drives the Raspberry Pi firmware's
tryboot A/B (autoboot.txt + `reboot '0 tryboot'`), where a failed try falls back by itself. Every failure to
read or change the boot state is a `BootControlError`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Protocol

from hal.errors import BootControlError
from trust.files import write_atomic

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


class TrybootBootControl:
    """Raspberry Pi 4/5 firmware A/B: autoboot.txt names the committed partition under [all] and the one to
    try under [tryboot]; `reboot '0 tryboot'` boots the latter once, and any later reboot the former."""

    def __init__(self, boot_dir: Path = Path("/boot/firmware"), partitions: dict[str, int] | None = None,
                 slot_root: Path = Path("/slots")) -> None:
        self.boot_dir = Path(boot_dir)
        self.partitions = partitions or {"a": 2, "b": 3}
        self.slot_root = Path(slot_root)

    def _autoboot(self) -> dict[str, int]:
        text = (self.boot_dir / "autoboot.txt").read_text()
        section, out = "all", {}
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]")
            elif line.startswith("boot_partition="):
                out[section] = int(line.split("=", 1)[1])
        return out

    def _slot_of(self, partition: int) -> str:
        return next(s for s, p in self.partitions.items() if p == partition)

    def state(self) -> dict:
        ab = self._autoboot()
        tryboot = Path("/proc/device-tree/chosen/bootloader/tryboot")
        trying = tryboot.exists() and tryboot.read_bytes()[-1:] == b"\x01"
        return {"committed": self._slot_of(ab["all"]), "trying_now": trying}

    def active(self) -> str:
        return self._slot_of(int(Path("/proc/device-tree/chosen/bootloader/partition").read_bytes()[-1]))

    def inactive(self) -> str:
        return "b" if self.state()["committed"] == "a" else "a"

    def slot_path(self, slot: str) -> Path:
        return self.slot_root / slot

    def _write(self, committed: str, tryboot: str) -> None:
        text = (f"[all]\ntryboot_a_b=1\nboot_partition={self.partitions[committed]}\n"
                f"[tryboot]\nboot_partition={self.partitions[tryboot]}\n")
        write_atomic(self.boot_dir / "autoboot.txt", text.encode())

    def try_next(self, slot: str) -> None:
        self._write(self.state()["committed"], slot)

    def boot(self) -> str:
        subprocess.run(["reboot", "0 tryboot"], check=True)  # the firmware tries the [tryboot] partition once
        return self.active()

    def mark_good(self) -> None:
        self._write(self.active(), self.active())

    def rollback(self, reason: str) -> None:
        subprocess.run(["reboot"], check=True)  # the next normal boot takes the committed partition


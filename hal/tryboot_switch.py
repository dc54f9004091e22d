"""The Raspberry Pi tryboot switch: the one step of an OTA on an A/B Pi image that changes the boot state.

The sensor and the OTA client run as `umbra` without capabilities, so they can neither rewrite
`/boot/firmware/autoboot.txt` nor reboot. They write one request line into `/run/umbra-boot/request`;
`umbra-boot-switch.path` starts `umbra-boot-switch.service`, which runs this file as the `umbra-boot` system user
(no capabilities; installed as /usr/lib/umbra/boot-switch/umbra-boot-switch, root's, standard library and
`trust.files` only). That user may write the boot partition (mounted with gid=umbra-boot, group-writable:
boot-firmware.mount.d/umbra-boot-switch.conf) and, by a polkit rule for it alone, ask logind to set the reboot
parameter and to reboot. It takes the request away before acting (a request is acted on at most once), checks
it, does it, and answers in `/run/umbra-boot/result`:

    <id> try a|b       [tryboot] names that slot's partition ([all], the committed one, stays); not the committed
    <id> commit a|b    [all] and [tryboot] name that slot: only the slot that booted may be committed
    <id> boot          logind SetRebootParameter('0 tryboot'), then Reboot: the firmware boots [tryboot] once
    <id> rollback      [tryboot] back to the committed slot, then logind Reboot (the committed slot boots)

`<id>` is 16 to 64 lowercase hex digits, chosen by the requester; the answer is `<id> ok` or `<id> error: ...`.
Anything else (a longer file, another action, a symlink, a missing or unreadable autoboot.txt, logind or polkit
saying no) is one error line on stderr (the journal) and in the answer, and nothing changes.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from trust.files import write_atomic

REQUEST_DIR = Path("/run/umbra-boot")
BOOT_DIR = Path("/boot/firmware")
DEVICE_TREE = Path("/proc/device-tree/chosen/bootloader")
PARTITIONS = {"a": 2, "b": 3}
TRYBOOT_ARGUMENT = "0 tryboot"
MAX_REQUEST = 100
REQUEST_LINE = re.compile(r"([0-9a-f]{16,64}) (try [ab]|commit [ab]|boot|rollback)\n?")

# logind's manager on the system bus (busctl call DESTINATION PATH INTERFACE METHOD SIGNATURE ARGS...). systemd
# 252's `systemctl reboot --reboot-argument=` writes /run/systemd/reboot-param itself (root's) before it asks
# logind, so a user without root asks logind for both: SetRebootParameter (polkit:
# org.freedesktop.login1.set-reboot-parameter) and Reboot (org.freedesktop.login1.reboot, or
# reboot-multiple-sessions while someone is logged in; never reboot-ignore-inhibit: a blocking inhibitor wins)
LOGIND = ["org.freedesktop.login1", "/org/freedesktop/login1", "org.freedesktop.login1.Manager"]

Runner = Callable[[list[str]], None]


class SwitchError(Exception):
    """A request refused or a boot state that cannot be read or written: nothing was changed."""


def parse_autoboot(text: str) -> dict[str, int]:
    """{"all": committed partition, "tryboot": partition to try} from autoboot.txt; both must be there."""
    section, out = "all", {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif line.startswith("boot_partition="):
            value = line.split("=", 1)[1].strip()
            if not value.isdigit():
                raise SwitchError(f"autoboot.txt: boot_partition={value!r} under [{section}] is not a number")
            out[section] = int(value)
    if "all" not in out:
        raise SwitchError("autoboot.txt names no boot_partition under [all]")
    out.setdefault("tryboot", out["all"])
    return out


def render_autoboot(partitions: dict[str, int], committed: str, tryboot: str) -> bytes:
    return (f"[all]\ntryboot_a_b=1\nboot_partition={partitions[committed]}\n"
            f"[tryboot]\nboot_partition={partitions[tryboot]}\n").encode()


def slot_of(partitions: dict[str, int], partition: int) -> str:
    for s, p in partitions.items():
        if p == partition:
            return s
    raise SwitchError(f"partition {partition} is neither slot's ({partitions})")


def booted_partition(device_tree: Path) -> int:
    """The partition the firmware booted (a big-endian u32 in the device tree)."""
    try:
        return int.from_bytes((Path(device_tree) / "partition").read_bytes(), "big")
    except OSError as e:
        raise SwitchError(f"cannot read the booted partition: {e}") from e


def read_request(path: Path) -> str:
    """The request's text, taken away first. Only a small regular file is read (never a symlink's target). One
    that cannot be opened (a symlink, a file this user may not read) is taken away too, when the folder lets it
    (the switch's user owns /run/umbra-boot): left there, it would start the path unit again and again."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        try:
            path.unlink()
        except OSError:
            pass
        raise SwitchError(f"cannot open the request {path}: {e.strerror}") from e
    try:
        path.unlink()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SwitchError(f"the request {path} is not a regular file")
        data = os.read(fd, MAX_REQUEST + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_REQUEST:
        raise SwitchError(f"the request is longer than {MAX_REQUEST} bytes")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as e:
        raise SwitchError("the request is not ASCII") from e


class Switch:
    def __init__(self, boot_dir: Path = BOOT_DIR, device_tree: Path = DEVICE_TREE,
                 partitions: dict[str, int] | None = None, busctl: str = "/usr/bin/busctl",
                 run: Runner | None = None) -> None:
        self.autoboot = Path(boot_dir) / "autoboot.txt"
        self.device_tree = Path(device_tree)
        self.partitions = partitions or dict(PARTITIONS)
        self.busctl = busctl
        self.run = run or _run

    def _read(self) -> dict[str, int]:
        try:
            return parse_autoboot(self.autoboot.read_text())
        except (OSError, UnicodeDecodeError) as e:
            raise SwitchError(f"cannot read {self.autoboot}: {getattr(e, 'strerror', None) or e}") from e

    def _write(self, committed: str, tryboot: str) -> None:
        try:
            write_atomic(self.autoboot, render_autoboot(self.partitions, committed, tryboot))
        except OSError as e:
            raise SwitchError(f"cannot write {self.autoboot}: {e.strerror}") from e

    def _logind(self, method: str, signature: str, *args: str) -> None:
        try:
            self.run([self.busctl, "call", "--system", *LOGIND, method, signature, *args])
        except subprocess.CalledProcessError as e:
            said = (e.stderr or "").strip().splitlines()  # busctl: "Call failed: Access denied"
            raise SwitchError(f"logind {method} failed: {said[-1] if said else f'exit {e.returncode}'}") from e
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SwitchError(f"logind {method} failed: {e}") from e

    def _reboot(self, parameter: str | None = None) -> None:
        if parameter is not None:
            self._logind("SetRebootParameter", "s", parameter)
        try:
            self._logind("Reboot", "b", "false")  # not interactive: polkit's rule answers, nobody is asked
        except SwitchError:
            if parameter is not None:  # no later reboot by someone else should carry it
                try:
                    self._logind("SetRebootParameter", "s", "")
                except SwitchError:
                    pass
            raise

    def do(self, action: str, slot: str | None) -> None:
        ab = self._read()
        committed = slot_of(self.partitions, ab["all"])
        if action == "try":
            assert slot is not None
            if slot == committed:
                raise SwitchError(f"slot {slot} is the committed one; try the other")
            self._write(committed, slot)
        elif action == "commit":
            assert slot is not None
            booted = slot_of(self.partitions, booted_partition(self.device_tree))
            if slot != booted:
                raise SwitchError(f"slot {slot} is not the booted one ({booted}): only a running slot is committed")
            self._write(slot, slot)
        elif action == "boot":
            if ab["tryboot"] == ab["all"]:
                raise SwitchError("no slot to try: [tryboot] names the committed partition")
            self._reboot(TRYBOOT_ARGUMENT)
        else:  # rollback
            self._write(committed, committed)
            self._reboot()


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=20)


def handle(request_dir: Path, switch: Switch) -> tuple[str, str | None]:
    """Act on request_dir/request and answer in request_dir/result: ("ok", None) or ("error", message)."""
    request_dir = Path(request_dir)
    rid = "-"
    try:
        text = read_request(request_dir / "request")
        m = REQUEST_LINE.fullmatch(text)
        if not m:
            raise SwitchError(f"bad request {text[:40]!r}: want '<hex id> try|commit a|b', 'boot' or 'rollback'")
        rid = m.group(1)
        action, _, slot = m.group(2).partition(" ")
        switch.do(action, slot or None)
    except SwitchError as e:
        write_atomic(request_dir / "result", f"{rid} error: {e}\n".encode(), mode=0o644)
        return "error", str(e)
    write_atomic(request_dir / "result", f"{rid} ok\n".encode(), mode=0o644)  # the umbra requester reads it
    return "ok", None


def main(argv: Sequence[str] | None = None, run: Runner | None = None) -> int:
    ap = argparse.ArgumentParser(prog="umbra-boot-switch", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=REQUEST_DIR, help="where the request and the answer are")
    ap.add_argument("--boot-dir", type=Path, default=BOOT_DIR, help="the firmware partition with autoboot.txt")
    ap.add_argument("--device-tree", type=Path, default=DEVICE_TREE)
    ap.add_argument("--partitions", default="a=2,b=3", help="slot=partition for both slots")
    ap.add_argument("--busctl", default="/usr/bin/busctl", help="systemd's D-Bus client, to ask logind")
    a = ap.parse_args(argv)
    try:
        parts = {k: int(v) for k, v in (kv.split("=") for kv in a.partitions.split(","))}
    except ValueError:
        parts = {}
    if sorted(parts) != ["a", "b"] or parts["a"] == parts["b"]:
        print(f"umbra-boot-switch: --partitions {a.partitions!r}: want a=N,b=M", file=sys.stderr)
        return 2
    if not (a.dir / "request").exists() and not (a.dir / "request").is_symlink():
        return 0  # the path unit saw a request another run already took
    result, message = handle(a.dir, Switch(a.boot_dir, a.device_tree, parts, a.busctl, run))
    if message:
        print(f"umbra-boot-switch: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Power cuts during an install: 100 runs, each killing (SIGKILL) the installing process at a random instant
of the install; then a "reboot" (the boot control decides the slot), a check that the running slot is whole
(every file matches its manifest), and the install run again. It must always come back on a healthy slot,
and the interrupted install must complete on the retry.

`python -m bench.ota_powercut [--runs 100] [--mb 8]`"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hal.boot import DirectoryBootControl
from ota import bundle

HW = "umbra-pi4"

CHILD = """
import sys
from pathlib import Path
from ota.client import OtaClient, OtaClientConfig, Update
from hal.boot import DirectoryBootControl
boot = DirectoryBootControl(Path(sys.argv[1]))
client = OtaClient(OtaClientConfig("https://unused", "d", "umbra-pi4", "1.0.0"), Path(sys.argv[2]), b"", None, boot)
print("go", flush=True)
client.install(Update("releases/umbra-pi4/2.0.0.tar", "2.0.0", "1.0.0", 0), Path(sys.argv[3]))
"""


def slot_is_whole(slot: Path) -> str | None:
    """The version in the slot if every file matches the slot's manifest, else None."""
    man = slot / "manifest.json"
    if not man.exists():
        return None
    doc = json.loads(man.read_text())
    for name, entry in doc["files"].items():
        p = slot / name
        if not p.exists() or hashlib.sha256(p.read_bytes()).hexdigest() != entry["sha256"]:
            return None
    return doc["version"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ota_powercut", description=__doc__)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--mb", type=int, default=8)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="umbra-powercut-"))
    rng = random.Random(1)
    trees = _releases(tmp, args.mb)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    duration = _install_time(tmp / "probe", trees, env)
    print(f"an uninterrupted install takes {duration * 1000:.0f} ms; "
          f"kills land uniformly over 0..{duration * 1.1 * 1000:.0f} ms")
    outcomes = {"killed_before_switch": 0, "killed_after_switch": 0, "completed_before_kill": 0}
    healthy_boots = retried_ok = 0
    for run in range(args.runs):
        healthy, done = _killed_install(tmp / f"run{run}", trees, env, rng.uniform(0, duration * 1.1), outcomes)
        healthy_boots += healthy
        retried_ok += done
    print(f"{args.runs} installs killed at random points: {outcomes}")
    print(f"came back on a whole, healthy slot: {healthy_boots} of {args.runs}")
    print(f"the update completed (on that boot or after a clean retry): {retried_ok} of {args.runs}")
    return 0 if healthy_boots == retried_ok == args.runs else 1


def _releases(tmp: Path, mb: int) -> dict[str, Path]:
    """Bundles of versions 1.0.0 and 2.0.0, each `mb` MB of random files in 8 folders."""
    trees = {}
    for v in ("1.0.0", "2.0.0"):
        tree = tmp / f"tree-{v}"
        for i in range(8):
            (tree / f"lib{i}").mkdir(parents=True, exist_ok=True)
            (tree / f"lib{i}" / "blob.bin").write_bytes(os.urandom(mb * 2**20 // 8))
        (tree / "VERSION").write_text(v)
        trees[v] = tmp / f"{v}.tar"
        bundle.build(tree, trees[v], v, [HW], "0")
    return trees


def _child(root: Path, trees: dict[str, Path], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(root / "boot"), str(root / "ota"),
                             str(trees["2.0.0"])], env=env, stdout=subprocess.PIPE)


def _install_time(probe: Path, trees: dict[str, Path], env: dict[str, str]) -> float:
    """Seconds an uninterrupted install of 2.0.0 takes, from the child's imports done to its exit."""
    DirectoryBootControl(probe / "boot")
    child = _child(probe, trees, env)
    assert child.stdout is not None  # stdout=PIPE
    child.stdout.readline()
    t0 = time.perf_counter()
    child.wait()
    return time.perf_counter() - t0


def _killed_install(root: Path, trees: dict[str, Path], env: dict[str, str], kill_at: float,
                    outcomes: dict[str, int]) -> tuple[bool, bool]:
    """An install SIGKILLed `kill_at` seconds in, then power back: (came back on a whole, healthy slot; the
    update completed, on that boot or after a clean retry)."""
    boot = DirectoryBootControl(root / "boot")
    bundle.verify_and_extract(trees["1.0.0"], boot.slot_path("a"), HW)  # factory image in slot a
    child = _child(root, trees, env)
    assert child.stdout is not None  # stdout=PIPE
    child.stdout.readline()  # imports done: the install starts now
    time.sleep(kill_at)
    child.send_signal(signal.SIGKILL)
    child.wait()
    if boot.state()["trying"]:
        outcomes["killed_after_switch" if child.returncode == -9 else "completed_before_kill"] += 1
    else:
        outcomes["killed_before_switch"] += 1
    booted = boot.boot()  # power returns
    healthy = bool(slot_is_whole(boot.slot_path(booted)))
    if healthy:
        boot.mark_good()
    else:
        boot.rollback("slot damaged")
    if slot_is_whole(boot.slot_path(boot.active())) == "2.0.0":
        return healthy, True  # the switch had happened: the new slot booted whole and committed
    retry = subprocess.run([sys.executable, "-c", CHILD, str(root / "boot"), str(root / "ota"),
                            str(trees["2.0.0"])], env=env, capture_output=True)
    if retry.returncode == 0 and slot_is_whole(boot.slot_path(boot.boot())) == "2.0.0":
        boot.mark_good()
        return healthy, True
    return healthy, False


if __name__ == "__main__":
    raise SystemExit(main())

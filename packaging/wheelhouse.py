"""Locked, hashed wheelhouses per target platform (run with any Python 3.11+, only pip needed).

    python3 packaging/wheelhouse.py lock arm64     # resolve the runtime dependencies -> packaging/lock/arm64.txt
    python3 packaging/wheelhouse.py fetch arm64 DIR    # download exactly the locked wheels into DIR, hashes checked
    python3 packaging/wheelhouse.py show arm64     # the lock: name, version, wheel, sha256

Targets are Debian 12 / Raspberry Pi OS Bookworm: CPython 3.11, glibc 2.36, so manylinux 2.17 to 2.36 wheels.
Only binary wheels (`--only-binary=:all:`): nothing is compiled on the device. ai-edge-litert publishes different
newest versions per platform tag, which is why each platform has its own lock. packaging/lock/constraints.txt
holds the pins the targets need beyond pyproject (numpy 1.x, for Raspberry Pi OS's picamera2 stack).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "packaging" / "lock"
MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}
GLIBC_MINORS = (17, 27, 28, 31, 34, 35, 36)  # the manylinux_2_x tags wheels are published with, up to 2.36


def pip_target_args(arch: str) -> list[str]:
    m = MACHINE[arch]
    plats = [f"manylinux_2_{n}_{m}" for n in GLIBC_MINORS] + [f"manylinux2014_{m}"]
    out = [a for p in plats for a in ("--platform", p)]
    return out + ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi", "abi3",
                  "--abi", "none", "--only-binary=:all:"]


def runtime_requirements() -> list[str]:
    """pyproject's [project] dependencies. Markers are evaluated by pip on this (x86_64 Linux) machine; the one
    machine marker (ai-edge-litert: x86_64 or aarch64) holds for both targets."""
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(doc["project"]["dependencies"])


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel_name_version(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return name.lower().replace("_", "-"), version


def lock(arch: str) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        reqs = Path(tmp) / "requirements.in"
        reqs.write_text("\n".join(runtime_requirements()) + "\n")
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-cache-dir", "-d", tmp,
                        *pip_target_args(arch), "-r", str(reqs), "-c", str(LOCKS / "constraints.txt")], check=True)
        lines = [f"# {arch}: CPython 3.11, manylinux <= 2.36; made by `python3 packaging/wheelhouse.py lock {arch}`"]
        for whl in sorted(Path(tmp).glob("*.whl")):
            name, version = wheel_name_version(whl.name)
            lines.append(f"{name}=={version} --hash=sha256:{sha256(whl)}  # {whl.name}")
    out = LOCKS / f"{arch}.txt"
    out.write_text("\n".join(lines) + "\n")
    return out


def fetch(arch: str, dest: Path) -> list[Path]:
    """The locked wheels into dest. A wheel already there with its locked sha256 is kept; the others are
    downloaded by pip, which checks every hash (--require-hashes)."""
    dest.mkdir(parents=True, exist_ok=True)
    missing = [(n, v, h) for n, v, h, wheel in entries(arch)
               if not (dest / wheel).is_file() or sha256(dest / wheel) != h]
    if missing:
        with tempfile.TemporaryDirectory() as tmp:
            reqs = Path(tmp) / "missing.txt"
            reqs.write_text("".join(f"{n}=={v} --hash=sha256:{h}\n" for n, v, h in missing))
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
                            "-d", str(dest), *pip_target_args(arch), "-r", str(reqs)], check=True)
    return sorted(dest.glob("*.whl"))


def entries(arch: str) -> list[tuple[str, str, str, str]]:
    """(name, version, sha256, wheel file) for each locked wheel."""
    out = []
    for line in (LOCKS / f"{arch}.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        spec, _, wheel = line.partition("#")
        req, hash_arg = spec.split()
        name, version = req.split("==")
        out.append((name, version, hash_arg.split(":", 1)[1], wheel.strip()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="wheelhouse.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("lock", "fetch", "show"))
    ap.add_argument("arch", choices=sorted(MACHINE))
    ap.add_argument("dest", nargs="?", type=Path)
    a = ap.parse_args(argv)
    if a.command == "lock":
        print(f"wrote {lock(a.arch)}")
    elif a.command == "fetch":
        if a.dest is None:
            ap.error("fetch needs a destination folder")
        print(f"{len(fetch(a.arch, a.dest))} wheels in {a.dest}")
    else:
        rows = entries(a.arch)
        for name, version, digest, wheel in rows:
            print(f"{name:28} {version:14} sha256:{digest}  {wheel}")
        print(f"{len(rows)} wheels locked for {a.arch} (CPython 3.11, {MACHINE[a.arch]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

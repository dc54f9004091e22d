"""Locked, hashed wheelhouses per target platform (run with any Python 3.11+, only pip needed).

    python3 packaging/wheelhouse.py lock arm64     # resolve the runtime dependencies -> packaging/lock/arm64.txt
    python3 packaging/wheelhouse.py fetch arm64 DIR    # download exactly the locked wheels into DIR, hashes checked
    python3 packaging/wheelhouse.py show arm64     # the lock: name, version, wheel, sha256
    python3 packaging/wheelhouse.py check arm64 [DIR]  # every runtime dependency in the lock (DIR: the fetched
                                                       # wheels, whose own requirements are followed too)

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
import zipfile
from email.parser import HeaderParser
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # a bare python3 with pip only: pip's own copy of the same library
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]

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


def target_environment(arch: str) -> dict[str, str]:
    """The marker environment of the target: Debian 12's CPython 3.11.2 on Linux, the arch's machine."""
    return {"python_version": "3.11", "python_full_version": "3.11.2", "implementation_name": "cpython",
            "implementation_version": "3.11.2", "platform_python_implementation": "CPython",
            "platform_machine": MACHINE[arch], "platform_system": "Linux", "sys_platform": "linux",
            "os_name": "posix", "platform_release": "", "platform_version": "", "extra": ""}


def locked_versions(arch: str) -> dict[str, str]:
    return {canonicalize_name(n): v for n, v, _, _ in entries(arch)}


def unmet(arch: str, requirements: list[str], required_by: str, locked: dict[str, str]) -> list[str]:
    """The requirements (those whose marker holds on the target) that the lock lacks or pins outside their
    specifier, one line each."""
    env = target_environment(arch)
    out = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        have = locked.get(canonicalize_name(req.name))
        if have is None:
            out.append(f"{arch}: {req} ({required_by}) is not in packaging/lock/{arch}.txt")
        elif not req.specifier.contains(have, prereleases=True):
            out.append(f"{arch}: {req} ({required_by}) but the lock pins {req.name}=={have}")
    return out


def wheel_requirements(wheel: Path) -> list[str]:
    """A wheel's Requires-Dist, from its METADATA."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        headers = HeaderParser().parsestr(z.read(meta).decode("utf-8"))
    return headers.get_all("Requires-Dist") or []


def check(arch: str, wheels: Path | None = None) -> list[str]:
    """What the lock misses: pyproject's runtime dependencies, and with `wheels` (the fetched locked wheels)
    every locked wheel's own requirements, so the closure is checked from the wheels' metadata."""
    locked = locked_versions(arch)
    problems = unmet(arch, runtime_requirements(), "pyproject.toml", locked)
    if wheels is not None:
        for _, _, _, wheel in entries(arch):
            problems += unmet(arch, wheel_requirements(wheels / wheel), wheel, locked)
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="wheelhouse.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("lock", "fetch", "show", "check"))
    ap.add_argument("arch", choices=sorted(MACHINE))
    ap.add_argument("dest", nargs="?", type=Path)
    a = ap.parse_args(argv)
    if a.command == "lock":
        print(f"wrote {lock(a.arch)}")
    elif a.command == "fetch":
        if a.dest is None:
            ap.error("fetch needs a destination folder")
        print(f"{len(fetch(a.arch, a.dest))} wheels in {a.dest}")
    elif a.command == "check":
        problems = check(a.arch, a.dest)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print(f"{len(problems)} runtime requirement(s) missing from the {a.arch} lock: "
                  f"python3 packaging/wheelhouse.py lock {a.arch}", file=sys.stderr)
            return 1
        print(f"{a.arch}: every runtime requirement is locked ({len(entries(a.arch))} wheels"
              f"{', their own requirements followed' if a.dest else ''})")
    else:
        rows = entries(a.arch)
        for name, version, digest, wheel in rows:
            print(f"{name:28} {version:14} sha256:{digest}  {wheel}")
        print(f"{len(rows)} wheels locked for {a.arch} (CPython 3.11, {MACHINE[a.arch]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

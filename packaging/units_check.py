"""The systemd units' checks, printed: `systemd-analyze verify` and the `systemd-analyze security` exposure.

    python3 packaging/units_check.py            # exit 1 if any unit fails verify or is above 2.5 exposure

verify runs on copies whose /opt/umbra/current/bin/ commands point at stand-in executables in a temporary
folder (verify checks that every Exec command exists); security runs offline on the units as shipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

UNITS_DIR = Path(__file__).resolve().parent / "systemd"
BIN = "/opt/umbra/current/bin/"
MAX_EXPOSURE = 2.5


def units() -> list[Path]:
    return sorted(p for p in UNITS_DIR.iterdir() if p.suffix in (".service", ".timer", ".path"))


def verify(paths: list[Path]) -> tuple[int, str]:
    """(return code, what systemd-analyze verify printed) for all units at once."""
    with tempfile.TemporaryDirectory() as tmp:
        stand_in = Path(tmp) / "bin"
        stand_in.mkdir()
        for name in sorted({m for p in paths for m in re.findall(re.escape(BIN) + r"([\w.-]+)", p.read_text())}):
            exe = stand_in / name
            exe.write_text("#!/bin/sh\nexit 0\n")
            exe.chmod(0o755)
        copies = []
        for p in paths:
            c = Path(tmp) / p.name
            c.write_text(p.read_text().replace(BIN, f"{stand_in}/"))
            copies.append(str(c))
        out = subprocess.run(["systemd-analyze", "verify", *copies], capture_output=True, text=True, cwd=tmp)
    return out.returncode, (out.stdout + out.stderr).replace(tmp, "<tmp>").strip()


def exposure(path: Path) -> float:
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(path)],
                         capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout + out.stderr)
    if not m:
        raise RuntimeError(f"systemd-analyze security gave no figure for {path.name}: {out.stderr.strip()[:200]}")
    return float(m.group(1))


def main() -> int:
    if shutil.which("systemd-analyze") is None:
        print("systemd-analyze not found: apt-get install systemd", file=sys.stderr)
        return 2
    paths = units()
    rc, text = verify(paths)
    print(f"systemd-analyze verify ({len(paths)} units): {'clean' if rc == 0 and not text else 'FAILED'}")
    if text:
        print("  " + text.replace("\n", "\n  "))
    worst = 0.0
    for p in paths:
        if p.suffix != ".service":
            continue
        e = exposure(p)
        worst = max(worst, e)
        print(f"systemd-analyze security {p.name:28} exposure {e:.1f}  (at most {MAX_EXPOSURE})")
    return 0 if rc == 0 and not text and worst <= MAX_EXPOSURE else 1


if __name__ == "__main__":
    sys.exit(main())

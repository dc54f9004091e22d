"""An OTA release built from the same tree as the Debian package: the package's wheelhouse (every wheel and its
hash lock) is the release tree; it is signed into a TUF repository, served by the reference cloud over pinned
mutual TLS, installed into the device's other slot (directory boot control), booted on trial and committed on
a passing health check whose probes re-check every wheel in the slot against the lock and run the venv that
the install built from them (ota.slots.install_venv: `<slot>/<version>`).

    python -m bench.ota_package packaging/dist/umbra_0.1.0-1_amd64.deb [--version 0.1.1]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.lib.ota_site import HW, Site
from ota import bundle
from ota.health import after_boot


def locked_wheels_match(slot: Path) -> bool:
    wh = slot / "wheelhouse"
    for line in (wh / "requirements.lock").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        digest, wheel = line.split("--hash=sha256:")[1].split()[0], line.split("#")[1].strip()
        if hashlib.sha256((wh / wheel).read_bytes()).hexdigest() != digest:
            return False
    return True


def venv_runs(venv: Path) -> bool:
    """The slot's venv (ota.slots.install_venv built it from the wheelhouse) starts the firmware's command and
    imports what its runtime dependencies provide."""
    code = "import firmware.cli.main, onnxruntime, tomlkit, ai_edge_litert, cv2"
    return (subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True).returncode == 0
            and subprocess.run([str(venv / "bin" / "umbra"), "--help"], capture_output=True).returncode == 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.ota_package", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("deb", type=Path)
    ap.add_argument("--version", default="0.1.1")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        subprocess.run(["dpkg-deb", "-x", str(a.deb), str(tmp / "deb")], check=True)
        tree = tmp / "tree"
        tree.mkdir()
        (tmp / "deb/usr/lib/umbra/wheelhouse").rename(tree / "wheelhouse")
        (tree / "VERSION").write_text(a.version)
        site = Site(tmp / "site")
        try:
            t0 = time.perf_counter()
            out = tmp / "release.tar"
            bundle.build(tree, out, a.version, [HW], "0.1.0")
            site.repo.publish_release(out, a.version, [HW], "0.1.0")
            t1 = time.perf_counter()
            client = site.client("0.1.0")
            update = client.check()
            if update is None:
                print("no update offered", file=sys.stderr)
                return 1
            slot = client.install(update, client.download(update))
            t2 = time.perf_counter()
            booted = site.boot.boot()
            slot_dir = site.boot.slot_path(booted)
            result = after_boot(site.boot, {"wheels": lambda: locked_wheels_match(slot_dir),
                                            "venv": lambda: venv_runs(slot_dir / a.version)}, 60)
            t3 = time.perf_counter()
        finally:
            site.close()
        st = site.boot.state()
        print(f"release {a.version} from {a.deb.name}: {out.stat().st_size / 2**20:.0f} MiB, "
              f"{len(list((tree / 'wheelhouse').glob('*.whl')))} wheels; build + sign {t1 - t0:.1f} s")
        print(f"check + download + verify + install into slot {slot}: {t2 - t1:.1f} s")
        print(f"booted slot {booted} on trial; health check {'passed' if result.ok else 'FAILED'} in {t3 - t2:.1f} s;"
              f" committed slot now {st['committed']}")
        return 0 if result.ok and st["committed"] == slot else 1


if __name__ == "__main__":
    sys.exit(main())

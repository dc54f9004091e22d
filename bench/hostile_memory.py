"""Memory a hostile file costs before it is refused: a gzip batch that inflates to 30 MB posted to the
reference cloud (real TLS on 127.0.0.1), and a signed-shape OTA bundle whose one member is sparse and
declares 8 GB, and a folder of images whose first is a 16000x12000 PNG (the camera's limit is 8192 a
side). Each runs in a fresh process; the figure is the peak resident memory (VmHWM, reset after
set-up) above the resident memory just before the attack. Goal: under 100 MB each.

`python -m bench.hostile_memory`"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

GOAL_MB = 100.0


def gzip_bomb(inflated: int, piece: bytes = b"x" * 65536) -> bytes:
    """A gzip stream of a JSON object whose one string is `inflated` bytes long, made without holding it."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [c.compress(b'{"pad": "')]
    for _ in range(inflated // len(piece)):
        out.append(c.compress(piece))
    out += [c.compress(b'"}'), c.flush()]
    return b"".join(out)


def sparse_bundle(path: Path, declared: int, hardware: str = "umbra-pi4") -> Path:
    """A bundle whose manifest and member headers both claim `declared` bytes for files/app.bin, stored as
    a GNU sparse (PAX 0.1) member of 16 real bytes: reading it naively yields `declared` bytes of zeros."""
    data = b"sparse-member!!!"
    manifest = {"schema": "umbra.release/1", "version": "9.9.9", "hardware": [hardware], "min_from": "0",
                "files": {"app.bin": {"sha256": hashlib.sha256(b"").hexdigest(), "length": declared}}}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        blob = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
        info = tarfile.TarInfo("files/app.bin")
        info.size = len(data)
        info.pax_headers = {"GNU.sparse.map": f"0,{len(data)}", "GNU.sparse.size": str(declared)}
        tar.addfile(info, io.BytesIO(data))
    return path


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} in /proc/self/status")


def _above_idle(attack) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    idle = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    outcome = attack()
    return _status("VmHWM") - idle, outcome


def _sparse(tmp: Path) -> tuple[float, str]:
    from ota.bundle import verify_and_extract
    from ota.errors import Refused

    bundle = sparse_bundle(tmp / "sparse.tar", 8 * 2**30)

    def attack() -> str:
        try:
            verify_and_extract(bundle, tmp / "out", "umbra-pi4")
        except Refused as e:
            return f"refused: {e}"
        except MemoryError:
            return "MemoryError"
        return "ACCEPTED"

    return _above_idle(attack)


def _bomb(tmp: Path) -> tuple[float, str]:
    import random

    from cloud.app import DEV_DEVICE
    from cloud.harness import CloudThread, device_setup
    from firmware.config.sync import OutboxConfig
    from firmware.sync.outbox import Outbox
    from firmware.sync.uploader import Uploader
    from hal.clock import SystemClock
    from trust.keys import sign_headers

    clock = SystemClock()
    cloud = CloudThread(tmp / "cloud", clock)
    dev = device_setup(cloud.cloud, tmp / "device", cloud.port)
    body = gzip_bomb(30_000_000)
    up = Uploader(dev.uploader, dev.tls, Outbox(OutboxConfig(path=dev.outbox_path)), clock, random.Random(0))

    async def post() -> str:
        h = sign_headers(up.keyring.current(clock.wall()), "POST", "/v1/batches", DEV_DEVICE, body, clock.wall())
        h.update({"Content-Type": "application/json", "Content-Encoding": "gzip"})
        try:
            return f"HTTP {(await up._call('POST', '/v1/batches', body, h)).get('error')}"
        except Exception as e:  # the refusal comes back as an UploadError naming the status
            return f"{len(body)} gzip bytes: {str(e)[:90]}"
        finally:
            await up.close()

    async def warm() -> None:  # one request first, so the TLS session and the server's handlers are resident
        try:
            await up._call("GET", "/v1/health")
        except Exception:
            pass

    loop = asyncio.new_event_loop()
    loop.run_until_complete(warm())
    time.sleep(0.2)
    try:
        return _above_idle(lambda: loop.run_until_complete(post()))
    finally:
        loop.close()
        cloud.close()


def big_png(path: Path, w: int, h: int) -> Path:
    """A real, complete PNG of w x h black pixels, compressed row by row (never held whole: ~0.6 MB on disk
    for 16000x12000)."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    c, row = zlib.compressobj(9), b"\0" * (1 + 3 * w)
    idat = b"".join([c.compress(row) for _ in range(h)] + [c.flush()])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def _image(tmp: Path) -> tuple[float, str]:
    import cv2  # noqa: F401  (loaded before the figure: its import is not the attack's cost)

    from hal.clock import SystemClock
    from hal.errors import CameraError
    from hal.video import VideoCamera

    (tmp / "frames").mkdir()
    big_png(tmp / "frames" / "0.png", 16000, 12000)

    def attack() -> str:
        try:
            VideoCamera(tmp / "frames", clock=SystemClock()).probe()
        except CameraError as e:
            return f"refused: {str(e).split('/')[-1]}"
        return "ACCEPTED"

    return _above_idle(attack)


SCENARIOS = {"bomb": ("gzip batch inflating to 30 MB, posted to the cloud", _bomb),
             "sparse": ("OTA bundle with a sparse member declaring 8 GB", _sparse),
             "image": ("first image of a folder, a 16000x12000 PNG (576 MB decoded)", _image)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.hostile_memory", description=__doc__)
    ap.add_argument("--one", choices=sorted(SCENARIOS), help="run one scenario in this process (internal)")
    args = ap.parse_args(argv)
    if args.one:
        with tempfile.TemporaryDirectory(prefix="umbra-hostile-") as d:
            mb, outcome = SCENARIOS[args.one][1](Path(d))
        print(json.dumps({"mb": round(mb, 1), "outcome": outcome}))
        return 0
    worst = 0.0
    print(f"{'attack':<55} {'peak above idle':>16}  outcome")
    for name, (label, _) in SCENARIOS.items():
        out = subprocess.run([sys.executable, "-m", "bench.hostile_memory", "--one", name], capture_output=True,
                             text=True, timeout=600)
        if out.returncode != 0:
            print(f"{label:<55} {'failed':>16}  {out.stderr.strip().splitlines()[-1:]}")
            worst = float("inf")
            continue
        got = json.loads(out.stdout.strip().splitlines()[-1])
        worst = max(worst, got["mb"])
        print(f"{label:<55} {got['mb']:>13.1f} MB  {got['outcome']}")
    print(f"goal: each under {GOAL_MB:.0f} MB -> {'met' if worst < GOAL_MB else 'NOT met'}")
    return 0 if worst < GOAL_MB else 1


if __name__ == "__main__":
    raise SystemExit(main())

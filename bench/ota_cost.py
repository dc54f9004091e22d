"""OTA cost on the device: bytes a check with nothing new downloads (goal: a few KB), and the time to verify a
30 MB bundle against its signed hash and its manifest (goal: at most 1 s). Loopback, real TLS, real TUF.

`python -m bench.ota_cost [--mb 30]`"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.lib.ota_site import Site
from ota.bundle import verify_and_extract


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ota_cost", description=__doc__)
    ap.add_argument("--mb", type=int, default=30)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="umbra-ota-cost-"))
    site = Site(tmp)
    try:
        payload = os.urandom(args.mb * 2**20)
        bundle_path = site.publish("1.1.0", payload=payload)
        client = site.client("1.0.0")
        update = client.check()
        assert update is not None, "the published 1.1.0 was not offered to a 1.0.0 device"
        local = client.download(update)
        up_to_date = site.client("1.1.0")
        up_to_date.check()  # first contact: the device fetches the current metadata once
        before = site.fetcher.bytes_received
        assert up_to_date.check() is None
        no_news = site.fetcher.bytes_received - before
        print(f"check with nothing new: {no_news} bytes downloaded (goal: a few KB)")
        info = client._up.get_targetinfo(update.name)
        assert info is not None, f"{update.name} is not in the signed targets"
        t0 = time.perf_counter()
        with open(local, "rb") as f:
            info.verify_length_and_hashes(f)  # the signed length and sha256
        out = tmp / "verify-out"
        out.mkdir()
        verify_and_extract(local, out, "umbra-pi4")  # and every file against the manifest
        elapsed = time.perf_counter() - t0
        print(f"verify a {bundle_path.stat().st_size / 2**20:.0f} MB bundle (signed hash + manifest, unpacking "
              f"included): {elapsed:.2f} s (goal <= 1 s)")
    finally:
        site.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Backlog and cost: how fast the device drains a long-offline outbox to the reference cloud, with how much
memory, and what enqueueing and a routine 30 s upload cycle cost.

The reference cloud runs as its own process (`python -m cloud serve`, real mutual TLS with pins on
127.0.0.1) so this process measures only the device. PETS density: PETS09-S2L1 shows about 6 people at a
time, 2 records per track per second, so about 12 records/s and ~1 million records in 24 h.

    python -m bench.backlog            # 1,000,000 records (24 h at PETS density)
    python -m bench.backlog --records 200000   # a quicker run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from firmware.sensing.records import QuantizedTrack

if TYPE_CHECKING:  # the device's classes, imported at run time only in the device process
    from firmware.sync.outbox import Outbox
    from firmware.sync.uploader import Uploader

PETS_RECORDS_PER_S = 12
DAY_RECORDS = PETS_RECORDS_PER_S * 86_400  # 1,036,800


def track(i: int, t0: int) -> dict:
    """The i-th record of a PETS-density stream from t0, in the form the device releases (its current schema)."""
    t = t0 + i // PETS_RECORDS_PER_S
    return QuantizedTrack(pseudonym=f"{i:016x}", epoch=t // 3600, t=t - t % 5, cell=(i % 40, (i // 40) % 30),
                          grid_m=0.5, size="SML"[i % 3], heading=i % 8, zone=("west", "east")[i % 2]).to_json()


def start_cloud(tmp: Path, port: int) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[1]
    p = subprocess.Popen([sys.executable, "-m", "cloud", "serve", "--dir", str(tmp / "cloud"), "--port",
                          str(port)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    if "serving" not in line:
        p.kill()
        raise SystemExit(f"the reference cloud did not start: {line!r}")
    return p


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure_enqueue(outbox_cls, cfg_cls, tmp: Path, per_tx: int, n: int, sync: str = "FULL") -> str:
    ob = outbox_cls(cfg_cls(path=str(tmp / f"enq{per_tx}{sync}.sqlite"), synchronous=sync))
    recs = [track(i, 1_700_000_000) for i in range(n)]
    t, c = time.perf_counter(), time.process_time()
    for k in range(0, n, per_tx):
        ob.enqueue(recs[k:k + per_tx])
    dt, dc = time.perf_counter() - t, time.process_time() - c
    ob.close()
    return f"{n / dt:,.0f} records/s wall ({n / dc:,.0f}/s of CPU)"


async def device(args: argparse.Namespace, tmp: Path, port: int) -> None:
    from cloud.app import CloudConfig
    from cloud.harness import device_setup
    from firmware.config.sync import OutboxConfig
    from firmware.sync.outbox import Outbox
    from firmware.sync.uploader import Uploader
    from hal.clock import SystemClock

    class _CloudFiles:  # device_setup needs only the PKI paths of the cloud the other process made
        def __init__(self) -> None:
            from trust import pki

            self.pki = pki.DevPkiPaths(tmp / "cloud" / "pki")
            self.config = CloudConfig(data_dir=str(tmp / "cloud"))

    dev = device_setup(_CloudFiles(), tmp / "device", port)  # type: ignore[arg-type]
    _enqueue_rates(tmp, Outbox, OutboxConfig)
    outbox = Outbox(OutboxConfig(path=dev.outbox_path, max_records=2 * DAY_RECORDS, batch_records=args.batch))
    up = Uploader(dev.uploader, dev.tls, outbox, SystemClock(), random.Random(0))
    await _routine_cycles(up, outbox, args.cycles)
    _backlog(outbox, args.records)
    await _drain(up, outbox, args.batch)


def _enqueue_rates(tmp: Path, Outbox: type, OutboxConfig: type) -> None:  # noqa: N803 (classes passed in)
    print(f"enqueue into {tmp}:\n"
          f"  12 records/transaction (one PETS tick), synchronous=FULL: "
          f"{measure_enqueue(Outbox, OutboxConfig, tmp, 12, 12_000)}\n"
          f"  12 records/transaction, synchronous=NORMAL:              "
          f"{measure_enqueue(Outbox, OutboxConfig, tmp, 12, 12_000, 'NORMAL')}\n"
          f"  1000 records/transaction, synchronous=FULL:              "
          f"{measure_enqueue(Outbox, OutboxConfig, tmp, 1000, 100_000)}  (target >= 20,000)", flush=True)


async def _routine_cycles(up: Uploader, outbox: Outbox, cycles: int) -> None:
    """Routine cycles: 30 s of PETS records each (360), CPU of this process per cycle."""
    cpu = []
    for c in range(cycles + 1):
        outbox.enqueue([track(c * 360 + i, 1_700_000_000) for i in range(360)])
        t = time.process_time()
        res = await up.cycle()
        if c:  # the first one pays the TLS handshake and key/pin housekeeping
            cpu.append((time.process_time() - t) * 1e3)
        assert res.error is None, res.error
    print(f"upload cycle at PETS density (360 records / 30 s): CPU median {statistics.median(cpu):.1f} ms, "
          f"max {max(cpu):.1f} ms over {len(cpu)} cycles (target <= 20 ms)", flush=True)


def _backlog(outbox: Outbox, n: int) -> None:
    t = time.perf_counter()
    base = 10_000_000
    for k in range(0, n, 10_000):
        outbox.enqueue([track(base + i, 1_700_000_000) for i in range(k, min(n, k + 10_000))])
    print(f"backlog: {n:,} records enqueued in {time.perf_counter() - t:.1f} s "
          f"({n / DAY_RECORDS * 24:.1f} h at PETS density)", flush=True)


async def _drain(up: Uploader, outbox: Outbox, batch: int) -> None:
    proc = psutil.Process()
    rss = [proc.memory_info().rss]
    sent, batches0 = 0, up.stats.batches
    t = time.perf_counter()
    while len(outbox):
        res = await up.cycle()
        assert res.error is None, res.error
        sent += res.records
        rss.append(proc.memory_info().rss)
        if len(rss) % 20 == 0:
            print(f"  ... {sent:,} drained, {sent / (time.perf_counter() - t):,.0f} records/s, "
                  f"RSS {rss[-1] / 2**20:.0f} MiB", flush=True)
    dt = time.perf_counter() - t
    await up.close()
    q = len(rss) // 10 or 1
    print(f"drain: {sent:,} records in {dt:.1f} s = {sent / dt:,.0f} records/s to the reference cloud "
          f"(target >= 10,000); {up.stats.batches - batches0} batches of up to {batch}")
    print(f"device RSS over the drain: start {rss[0] / 2**20:.0f} MiB, first tenth max "
          f"{max(rss[:q]) / 2**20:.0f} MiB, last tenth max {max(rss[-q:]) / 2**20:.0f} MiB, overall max "
          f"{max(rss) / 2**20:.0f} MiB (flat when the last tenth is no higher than the first)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.backlog", description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=5000, help="records per batch")
    ap.add_argument("--cycles", type=int, default=20, help="routine 30 s cycles to time")
    ap.add_argument("--dir", default="", help="where the outbox lives (default: a temp dir)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="umbra-backlog-", dir=args.dir or None) as d:
        tmp = Path(d)
        port = free_port()
        cloud = start_cloud(tmp, port)
        try:
            asyncio.run(device(args, tmp, port))
        finally:
            os.kill(cloud.pid, signal.SIGTERM)
            cloud.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

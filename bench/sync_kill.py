"""Nothing lost, nothing twice: SIGKILL the device process at random points while records flow, and take the
cloud away for long simulated stretches, then check that every committed record arrived exactly once.

The parent runs the reference cloud (real mutual TLS on 127.0.0.1) and starts the device as a child process
again and again. The child enqueues PETS-density track records (8 per emit tick, 2 emit ticks a second of
simulated time), prints after each committed transaction how many it has committed, and uploads every 30 s
of simulated time (or at its backoff/Retry-After delay after a failure) on a FakeClock, so hours of
simulated time pass in seconds. The parent kills it with SIGKILL after a random number of commits plus a
random delay (so kills land in enqueues, uploads and acks), and in some runs takes the cloud away: either
the server is stopped (connections refused) or it answers 503 with a long Retry-After. A last child drains
the outbox with the cloud up. Every record carries a unique pseudonym (run, index), so the cloud's table
shows what arrived.

    python -m bench.sync_kill            # 120 runs (about 2 minutes)
    python -m bench.sync_kill --runs 300
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from firmware.sensing.records import QuantizedTrack

if TYPE_CHECKING:  # the cloud's classes, imported at run time only in the parent process
    from aiohttp import web

    from cloud.app import Cloud

RECORDS_PER_TICK = 8
TICK_S = 0.5


class SetClock:
    """A wall clock the parent sets from what the child reports (the cloud follows the device's time)."""

    def __init__(self, wall: float) -> None:
        self._wall = wall

    def set(self, wall: float) -> None:
        self._wall = max(self._wall, wall)

    def wall(self) -> float:
        return self._wall

    def monotonic_ns(self) -> int:
        return int(self._wall * 1e9)

    def sleep_until_ns(self, deadline_ns: int) -> None:  # pragma: no cover - the cloud never sleeps
        return None


# --- child: the device ------------------------------------------------------------------------------------


def child(args: argparse.Namespace) -> int:
    from firmware.config.sync import OutboxConfig, UploaderConfig
    from firmware.sync.outbox import Outbox
    from firmware.sync.uploader import Uploader
    from hal.clock import FakeClock
    from trust.tls import TlsConfig

    logging.basicConfig(level=logging.ERROR)  # upload failures during outages are expected here
    d = Path(args.dir) / "device"
    tls = TlsConfig(ca_file=str(Path(args.dir) / "cloud" / "pki" / "ca.pem"), cert_file=str(d / "device.pem"),
                    key_file=str(d / "device.key"), pins_file=str(d / "pins.json"),
                    fleet_root_public_key=args.root_pub)
    cfg = UploaderConfig(url=f"https://localhost:{args.port}", device_id="umbra-dev-0001",
                         keyring_file=str(d / "keys.json"), connect_timeout_s=2, request_timeout_s=10,
                         backoff_max_s=900)
    clock = FakeClock(start_wall=args.start_wall)
    outbox = Outbox(OutboxConfig(path=str(d / "outbox.sqlite"), batch_records=2000))
    up = Uploader(cfg, tls, outbox, clock, random.Random(args.seed))

    async def run() -> None:
        next_upload = clock.wall() + (0 if args.drain else cfg.period_s * random.Random(args.seed).random())
        i = 0
        for _ in range(1_000_000 if not args.drain else 10_000):
            if args.drain:
                res = await up.cycle()
                if res.error is None and len(outbox) == 0:
                    print(f"D {clock.wall():.1f}", flush=True)
                    await up.close()
                    return
                clock.advance(up.next_delay(res))
                continue
            recs = [track(args.run, i + j, int(clock.wall())) for j in range(RECORDS_PER_TICK)]
            outbox.enqueue(recs)
            i += RECORDS_PER_TICK
            print(f"C {i} {clock.wall():.1f}", flush=True)
            clock.advance(TICK_S)
            if clock.wall() >= next_upload:
                res = await up.cycle()
                next_upload = clock.wall() + up.next_delay(res)
                print(f"U {int(res.error is None)} {res.records} {clock.wall():.1f}", flush=True)
        print("X gave up", flush=True)

    asyncio.run(run())
    return 0


def track(run: int, i: int, t: int) -> dict:
    """Record i of a run, in the form the device releases (its current schema); its pseudonym names run and i."""
    return QuantizedTrack(pseudonym=f"{run:06x}{i:010x}", epoch=0, t=t - t % 5, cell=(i % 40, (i // 40) % 30),
                          grid_m=0.5, size="M", heading=i % 8, zone="east").to_json()


# --- parent: the cloud, the kills, the books --------------------------------------------------------------


class CloudThread:
    def __init__(self, cloud: Cloud, port: int = 0) -> None:
        self.cloud = cloud
        self.loop = asyncio.new_event_loop()
        self.port = port
        self.runner: web.AppRunner | None = None
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def up(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.cloud.start(port=self.port), self.loop)
        self.runner, self.port = fut.result(10)

    def down(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
            self.runner = None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sync_kill", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=120)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--outage-share", type=float, default=0.3, help="share of runs with the cloud away")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--drain", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dir", default="", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--run", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--start-wall", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--root-pub", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory(prefix="umbra-sync-kill-") as tmp:
        return parent(args, Path(tmp))


@dataclass
class _Outage:
    """The cloud outage in progress: "down" (no server) or "503" (answers 503), for `runs` more runs."""

    kind: str
    runs: int
    start: float


def parent(args: argparse.Namespace, tmp: Path) -> int:
    from cloud.app import DEV_DEVICE, Cloud, CloudConfig
    from cloud.harness import device_setup

    rng = random.Random(args.seed)
    clock = SetClock(time.time())
    cloud = Cloud(CloudConfig(data_dir=str(tmp / "cloud"), key_lifetime_s=6 * 3600, rotate_lead_s=3600,
                              replay_window_s=3600), clock)
    ct = CloudThread(cloud)
    ct.up()
    dev = device_setup(cloud, tmp / "device", ct.port)
    committed: dict[int, int] = {}
    stats: Counter[str] = Counter()
    t0, sim0 = time.perf_counter(), clock.wall()
    outage: _Outage | None = None
    for run in range(args.runs + 1):
        drain = run == args.runs
        if outage is None and not drain and rng.random() < args.outage_share / 3:
            outage = _start_outage(rng, clock, ct, stats)
        if outage is not None and outage.kind == "503":
            cloud.unavailable_until = clock.wall() + rng.randrange(60, 600)
        stats["runs_in_outage"] += outage is not None
        cmd = [sys.executable, "-m", "bench.sync_kill", "--child", "--dir", str(tmp), "--port", str(ct.port),
               "--run", str(run), "--start-wall", f"{clock.wall():.1f}", "--seed", str(rng.randrange(1 << 30)),
               "--root-pub", dev.tls.fleet_root_public_key] + (["--drain"] if drain else [])
        _run_child(cmd, run, drain, rng, clock, committed, stats)
        if outage is not None:
            outage.runs -= 1
            if outage.runs <= 0 or run + 1 == args.runs:
                stats["outage_sim_s"] += int(clock.wall() - outage.start)
                if outage.kind == "down":
                    ct.up()
                cloud.unavailable_until = 0
                outage = None
    elapsed = time.perf_counter() - t0
    report(cloud, DEV_DEVICE, committed, stats, elapsed, args.runs, clock.wall() - sim0)
    ct.down()
    return 0


def _start_outage(rng: random.Random, clock: SetClock, ct: CloudThread, stats: Counter[str]) -> _Outage:
    """An outage episode spans 2 to 8 runs (simulated minutes); the device is killed inside it too."""
    outage = _Outage(rng.choice(["down", "503"]), rng.randrange(2, 9), clock.wall())
    stats[f"outage_{outage.kind}"] += 1
    if outage.kind == "down":
        ct.down()
    return outage


def _run_child(cmd: list[str], run: int, drain: bool, rng: random.Random, clock: SetClock,
               committed: dict[int, int], stats: Counter[str]) -> None:
    """One device run in a child process, SIGKILLed after a random number of commits (unless draining);
    what it printed (commits, uploads, clock) is read back, up to the kill and after it."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    assert p.stdout is not None
    kill_after = rng.randrange(1, 400)
    seen = 0
    for line in p.stdout:
        kind, *rest = line.split()
        if kind == "C":
            committed[run] = int(rest[0])
            clock.set(float(rest[1]))
            seen += 1
        elif kind == "U":
            stats["uploads_ok" if rest[0] == "1" else "uploads_failed"] += 1
            clock.set(float(rest[2]))
        elif kind == "D":
            clock.set(float(rest[0]))
        if not drain and seen >= kill_after:
            time.sleep(rng.random() * 0.03)  # land anywhere: in an enqueue, an upload, an ack
            os.kill(p.pid, signal.SIGKILL)
            stats["kills"] += 1
            break
    for line in p.stdout:  # what it printed before the kill landed (committed and reported)
        kind, *rest = line.split()
        if kind == "C":
            committed[run] = int(rest[0])
            clock.set(float(rest[1]))
    p.wait(60)


def report(cloud: Cloud, device: str, committed: dict[int, int], stats: Counter, elapsed: float,
           runs: int, sim_s: float) -> None:
    store = cloud.store
    db = store.db
    rows = db.all("SELECT json_extract(body, '$.pseudonym') FROM records WHERE device_id=?", (device,))
    arrived = Counter(r[0] for r in rows)
    wanted = {f"{run:06x}{i:010x}" for run, n in committed.items() for i in range(n)}
    lost = len(wanted - set(arrived))
    twice = sum(1 for n in arrived.values() if n > 1)
    extra = len(set(arrived) - wanted)  # committed, killed before it could say so: still exactly once
    (dup_batches,) = db.one("SELECT COUNT(*) FROM batches") or (0,)
    print(f"sync_kill: {runs} runs, {stats['kills']} SIGKILLs; outages: {stats['outage_down']} with the cloud "
          f"stopped, {stats['outage_503']} with 503 + Retry-After, {stats['runs_in_outage']} runs inside them, "
          f"{stats['outage_sim_s'] / 60:.0f} simulated minutes in all; {sim_s / 3600:.1f} h simulated in "
          f"{elapsed:.0f} s wall")
    print(f"  committed (reported by the device before its kill): {len(wanted)}")
    print(f"  arrived at the cloud:                               {len(arrived)} "
          f"(of which committed, killed before it could print so: {extra})")
    print(f"  lost (committed, never arrived):                    {lost}")
    print(f"  counted twice at the cloud:                         {twice}")
    print(f"  resent batches acknowledged as duplicates:          {cloud.duplicate_batches}")
    print(f"  duplicate records dropped by the cloud's dedup:     {store.count('duplicate_records')}")
    print(f"  batches stored {dup_batches}; uploads ok {stats['uploads_ok']}, failed {stats['uploads_failed']}; "
          f"cloud refusals {dict(cloud.refusals)}")
    print("  RESULT: " + ("PASS every committed record arrived exactly once" if lost == 0 and twice == 0
                          else "FAIL"))


if __name__ == "__main__":
    raise SystemExit(main())

"""What serving the installer view costs the sensor loop: the bench run's loop (PETS09 through VideoCamera,
the real SSD on CPU, the real tracker) with the installer server attached, in blocks of frames that
alternate between nobody watching (no view is made) and a client polling the page as the browser does
(`/state` and `/view.jpg` every 0.4 s, over HTTP on 127.0.0.1). The view is made in its worker thread; when a
watched block's frames are done and a view is still in progress, the block goes on (no new view begun)
until it ends, so that all of its work is done beside the watched block's frames and counted there. Both kinds of
block run in the same process on the same footage, so the ratio of their frame rates is measured in one
run, whatever else loads the machine. With --privacy, every view made is then checked: persons found by the
shared person detector (score >= 0.3, bench.lib.viewcheck) anywhere, and faces found by BlazeFace inside a
blurred region.

The first `--warmup` frames are run and not counted (the model's first invokes are slow). Beside the frame
rates, the process's CPU time a frame is printed for each kind of block (every thread: loop, view worker,
server and the polling client): on a machine loaded by others the wall-clock rates move by up to 20% between
blocks of the same work, the CPU time a frame much less.

    python -m bench.installer_cost [--frames 795] [--block 28] [--warmup 14] [--privacy]"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from bench.lib import data

CONFIG = Path(__file__).parent / "configs" / "pets09.toml"


def _client(base: str, token: str, stop: threading.Event, watching: threading.Event, served: list) -> None:
    import http.cookiejar
    import urllib.parse
    import urllib.request

    jar = http.cookiejar.CookieJar()
    op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    op.open(base + "/session", data=urllib.parse.urlencode({"token": token}).encode(), timeout=10).read()
    while not stop.is_set():
        if watching.is_set():
            op.open(base + "/state", timeout=10).read()
            try:
                served.append(len(op.open(base + "/view.jpg", timeout=10).read()))
            except OSError:
                pass  # 503 before the first view
        time.sleep(0.4)


def _cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process: loop, view worker, server, client
    return r.ru_utime + r.ru_stime


def _alternate(loop, inst, frames: int, block: int, watching: threading.Event, warmup: int
               ) -> dict[str, list[float]]:
    """`warmup` frames first, not counted (the model's first invokes are slow: that block would be billed
    to nobody watching), then blocks of `block` frames, nobody watching and the page polled in turn:
    seconds, frames and process CPU seconds of each kind."""
    spent = {"off": [0.0, 0, 0.0], "on": [0.0, 0, 0.0]}
    if warmup:
        inst.view._watched_ns = None
        loop.run(max_ticks=loop.stats.ticks + warmup)
    done = 0
    while done < frames:
        kind = "on" if (done // block) % 2 else "off"
        if kind == "on":
            watching.set()
            inst.view.watch()
        else:
            watching.clear()
            inst.view._watched_ns = None  # nobody watching from this block's first tick
        n = min(block, frames - done)
        t0, c0 = time.perf_counter(), _cpu_s()
        stats = loop.run(max_ticks=loop.stats.ticks + n)
        if kind == "on":  # no new view, and the loop runs on (counted here) until the one in the worker ends:
            due, inst.view._next_ns = inst.view._next_ns, 2**62  # all of its work is done beside this block's
            while inst.view.busy():
                before = loop.stats.frames
                stats = loop.run(max_ticks=loop.stats.ticks + 1)
                if stats.frames == before:
                    break  # the video ended
                n += 1
            inst.view.drain()
            inst.view._next_ns = due
        spent[kind][0] += time.perf_counter() - t0
        spent[kind][2] += _cpu_s() - c0
        spent[kind][1] += n
        done += n
        if stats.frames < done + warmup:
            break  # the video ended
    return spent


def run(frames: int, block: int, privacy: bool, warmup: int = 14) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from firmware import config as cfgmod
    from firmware.cli.assemble import build_loop
    from firmware.cli.installer import attach_installer
    from firmware.installer.counts import RunCounts
    from firmware.installer.token import sign_installer_token
    from firmware.privacy.audit import NoAudit
    from firmware.samples.authorization import public_key_b64
    from firmware.sensing.geometry import Geometry
    from hal.clock import FakeClock

    key = Ed25519PrivateKey.generate()
    cfg = cfgmod.load(CONFIG)
    cfg = replace(cfg, camera=replace(cfg.camera, source=str(data.need("video/vtest.avi"))),
                  installer=replace(cfg.installer, enabled=True, port=0, authority_public_key=public_key_b64(key)))
    clock = FakeClock()
    counts = RunCounts(Geometry(cfg.geometry))
    loop = build_loop(cfg, CONFIG.parent, clock, sinks=[counts])
    inst = attach_installer(cfg, CONFIG, loop, counts, NoAudit(), clock)
    assert inst is not None
    views: list = []
    inst.view.listeners.append(views.append)
    tick_wall: list[float] = []
    loop.frame_hooks.append(lambda f, d, w: tick_wall.append(time.perf_counter()))
    now = int(clock.wall())
    token = sign_installer_token(key, device_id=cfg.device.id, not_before=now - 1, expires=now + 3600, token_id="b")
    stop, watching = threading.Event(), threading.Event()
    served: list[int] = []
    client = threading.Thread(target=_client, args=(f"http://127.0.0.1:{inst.server.port}", token, stop, watching,
                                                    served), daemon=True)
    client.start()
    try:
        spent = _alternate(loop, inst, frames, block, watching, warmup)
    finally:
        stop.set()
        client.join(5)
        inst.stop()
    rate = {k: n / s if s else 0.0 for k, (s, n, _) in spent.items()}
    ratio = rate["on"] / rate["off"] if rate["off"] else 0.0
    cpu = {k: c / n if n else 0.0 for k, (_, n, c) in spent.items()}  # process CPU seconds a frame
    cpu_ratio = cpu["off"] / cpu["on"] if cpu["on"] else 0.0
    lines = [
        f"installer view cost on PETS09 ({loop.stats.frames} frames, blocks of {block}, view_hz "
        f"{cfg.installer.view_hz} at the footage's 7 fps):",
        f"  nobody watching: {spent['off'][1]} frames in {spent['off'][0]:.1f} s = {rate['off']:.2f} frames/s",
        f"  page polled:     {spent['on'][1]} frames in {spent['on'][0]:.1f} s = {rate['on']:.2f} frames/s "
        f"({inst.view.made} views made, {inst.view.withheld} withheld, {inst.view.failed} failed, "
        f"{len(served)} JPEGs served)",
        f"  {inst.view.checks} JPEG checks ({inst.view.checks / max(1, inst.view.made + inst.view.withheld):.2f} a "
        f"view){_tiles(inst.view.persons)}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        f"  ratio on/off {ratio:.3f}: the view costs {1 - ratio:.1%} of the loop's frame rate (goal: at most 10%)",
        f"  process CPU a frame: {cpu['off'] * 1e3:.0f} ms nobody watching, {cpu['on'] * 1e3:.0f} ms page polled "
        f"(client included): CPU-bound, the rate ratio would be {cpu_ratio:.3f} (costs {1 - cpu_ratio:.1%})",
    ]
    if privacy:
        lines.append(_privacy(views))
    return "\n".join(lines)


def _tiles(persons: object) -> str:
    runs, reused = getattr(persons, "runs", None), getattr(persons, "reused", None)
    return "" if runs is None else f", person re-check tiles: {runs} run, {reused} the same as the last check's"


def _privacy(views: list) -> str:
    from bench.lib.viewcheck import PERSON_THRESHOLD, Checker

    c = Checker().check(views)
    return (f"  privacy of the {c.views} views made: {c.persons} persons found at >= {PERSON_THRESHOLD} (best "
            f"person score anywhere {c.best_person:.2f}), {c.faces_in_blur} faces inside blurred regions (two "
            f"BlazeFace variants){'; frames ' + str(list(c.bad_seqs)) if c.bad_seqs else ''}")


@data.clean_exit
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.installer_cost", description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=795)
    ap.add_argument("--block", type=int, default=28, help="frames per block (4 s of footage)")
    ap.add_argument("--privacy", action="store_true", help="check every view made for persons and faces")
    ap.add_argument("--warmup", type=int, default=14, help="frames run first and not counted")
    args = ap.parse_args(argv)
    data.ensure_env()
    print(run(args.frames, args.block, args.privacy, args.warmup))
    return 0


if __name__ == "__main__":
    sys.exit(main())

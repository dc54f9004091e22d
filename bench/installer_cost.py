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

The first `--warmup` frames are run watched (a view is made) and not counted (the models' first invokes are
slow: the loop's SSD, the face detector's and the re-check's, which would be billed to the first watched kind
of block). Beside the frame
rates, the process's CPU time a frame is printed for each kind of block (every thread: loop, view worker,
server and the polling client): on a machine loaded by others the wall-clock rates move by up to 20% between
blocks of the same work, the CPU time a frame much less.

With --compare the watched blocks alternate between the view as it is made now ("on": the worker thread at
nice 19, its models on that one thread) and as main made it until 6 Dec ("main": the worker at the loop's
priority, its person re-check on the loop's detector threads and its face check on the tick's BlazeFace, 2
threads), with a block of nobody watching between each: off, on, off, main. The same view code runs in both;
only the worker's pool and re-check models are swapped between blocks. For each tick that started a view,
the view's work in the tick is timed (wall and the process's CPU, and BlazeFace's part of it) and printed
per kind, and the views each kind made per second of its blocks.

With --view-hz above what the worker keeps up with, a view is begun whenever none is in progress: the
views made a second of the watched blocks' wall time is then the rate the worker sustains beside the loop.

    python -m bench.installer_cost [--frames 795] [--block 28] [--warmup 14] [--privacy] [--compare]
                                   [--view-hz HZ]"""

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


def _session(base: str, token: str):  # noqa: ANN202 - an urllib opener
    """An opener holding an installer session (opened here, before the loop runs: the request marks the view
    watched)."""
    import http.cookiejar
    import urllib.parse
    import urllib.request

    op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    op.open(base + "/session", data=urllib.parse.urlencode({"token": token}).encode(), timeout=10).read()
    return op


def _client(base: str, op, stop: threading.Event, watching: threading.Event, served: list,  # noqa: ANN001
            polling: threading.Lock) -> None:
    while not stop.is_set():
        with polling:  # held while a poll is in flight: a block of nobody watching starts after it
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


class _Probe:
    """The view's work in the loop's tick, measured: for each tick that started a view, the wall time of the
    view's track hook, the process's CPU time meanwhile (the model's own threads included; no view is in
    progress then, so the worker is idle; the server and the polling client may run), and how much of the wall
    BlazeFace took (its calls in the loop's thread); per kind of watched block."""

    def __init__(self, loop, view) -> None:  # noqa: ANN001 - SensorLoop, InstallerView
        self.view, self.kind = view, "off"
        self.tick: dict[str, list[tuple[float, float, float]]] = {}  # kind: (wall s, CPU s, BlazeFace s)
        self._face_s, self._started, self._loop_thread = 0.0, 0, threading.get_ident()
        self._capture, self._work = view._capture, view._work
        view._capture, view._work = self._captured, self._worked
        self.latency: dict[str, list[float]] = {}  # kind: wall s from the tick's start of a view to its end
        self._begun: dict[int, tuple[str, float]] = {}
        if view.faces is not None:
            view.faces = _TimedFaces(view.faces, self)
        loop.track_hooks[loop.track_hooks.index(view.on_tracks)] = self._on_tracks

    def _on_tracks(self, frame, tracks, wall) -> None:  # noqa: ANN001 - a track hook
        started, self._face_s = self._started, 0.0
        w0, c0 = time.perf_counter(), time.process_time()
        self.view.on_tracks(frame, tracks, wall)
        if self._started > started:
            self.tick.setdefault(self.kind, []).append((time.perf_counter() - w0, time.process_time() - c0,
                                                        self._face_s))

    def _captured(self, pixels, source_size, tracks, seq, wall):  # noqa: ANN001, ANN202 - InstallerView's
        self._started += 1
        t0 = time.perf_counter()
        job = self._capture(pixels, source_size, tracks, seq, wall)
        self._begun[id(job)] = (self.kind, t0)
        return job

    def _worked(self, job) -> None:  # noqa: ANN001 - a ViewJob, in the worker
        try:
            self._work(job)
        finally:
            kind, t0 = self._begun.pop(id(job), ("?", time.perf_counter()))
            self.latency.setdefault(kind, []).append(time.perf_counter() - t0)

    def lines(self) -> list[str]:
        out = []
        for kind, rows in self.tick.items():
            ms = [[r[i] * 1e3 for r in rows] for i in range(3)]
            out.append(f"  {kind}: the view's work in the tick, {len(rows)} views: wall {_mean(ms[0]):.1f} ms mean, "
                       f"{max(ms[0]):.1f} max; process CPU {_mean(ms[1]):.1f} ms mean, {max(ms[1]):.1f} max; BlazeFace "
                       f"{_mean(ms[2]):.1f} ms mean ({_mean(ms[2]) / max(1e-9, _mean(ms[0])):.0%} of the wall)")
            lat = self.latency.get(kind, [])
            if lat:
                out.append(f"  {kind}: a view from the tick's start to its end in the worker (served or withheld): "
                           f"{_mean(lat):.2f} s mean, {max(lat):.2f} s max")
        return out


class _TimedFaces:
    """A face detector whose calls in the loop's thread are timed into `probe`."""

    def __init__(self, faces, probe: _Probe) -> None:  # noqa: ANN001
        self.faces, self.probe = faces, probe

    def detect(self, rgb):  # noqa: ANN001, ANN201
        t0 = time.perf_counter()
        try:
            return self.faces.detect(rgb)
        finally:
            if threading.get_ident() == self.probe._loop_thread:
                self.probe._face_s += time.perf_counter() - t0


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _alternate(loop, inst, frames: int, block: int, watching: threading.Event, polling: threading.Lock,
               warmup: int, probe: _Probe, kinds: tuple[str, ...], setups: dict[str, tuple]) -> dict[str, list]:
    """`warmup` frames first for each kind of watched block, watched and not counted (the models' first
    invokes are slow: they would be billed to the first block of their kind), then blocks of `block` frames,
    nobody watching and the page polled in turn (`kinds` in turn, "off" nobody watching; the others with the
    view's worker pool and re-check models of `setups`): seconds, frames, process CPU seconds and views made
    of each kind."""
    spent = {k: [0.0, 0, 0.0, 0] for k in kinds}
    for kind in (k for k in dict.fromkeys(kinds) if k != "off" and warmup):  # its models' first calls are slow
        probe.kind = "warm-up"
        _use(inst.view, setups[kind])
        inst.view.watch()
        loop.run(max_ticks=loop.stats.ticks + warmup)
        inst.view._watched_ns = None
        inst.view.drain()
    done, i = 0, 0
    while done < frames:
        kind = kinds[i % len(kinds)]
        i += 1
        probe.kind = kind
        if kind != "off":
            _use(inst.view, setups[kind])
            watching.set()
            inst.view.watch()
        else:
            watching.clear()
            with polling:  # a poll in flight would mark the view watched again
                inst.view._watched_ns = None  # nobody watching from this block's first tick
        n, made = min(block, frames - done), inst.view.made
        t0, c0 = time.perf_counter(), _cpu_s()
        stats = loop.run(max_ticks=loop.stats.ticks + n)
        if kind != "off":  # no new view, and the loop runs on (counted here) until the one in the worker ends:
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
        spent[kind][3] += inst.view.made - made
        done += n
        if stats.frames < done + warmup * (len(set(kinds)) - 1):
            break  # the video ended
    return spent


def _use(view, setup: tuple) -> None:  # noqa: ANN001 - InstallerView
    """The view's worker pool and re-check models of one kind of block (no view is in progress here)."""
    view._executor, view.persons, view.recheck_faces = setup


def _main_setup(cfg, view) -> tuple:  # noqa: ANN001 - UmbraConfig, InstallerView
    """The view's worker as main made it until 6 Dec: a pool thread at the loop's priority, the person
    re-check on the loop's detector threads, the face check on the tick's BlazeFace (2 threads)."""
    from concurrent.futures import ThreadPoolExecutor

    from firmware.cli.installer import person_recheck

    return (ThreadPoolExecutor(max_workers=1, thread_name_prefix="main-view"),
            person_recheck(cfg, threads=cfg.detector.threads), view.faces)


def run(frames: int, block: int, privacy: bool, warmup: int = 14, compare: bool = False,
        view_hz: float | None = None) -> str:
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
                  installer=replace(cfg.installer, enabled=True, port=0, authority_public_key=public_key_b64(key),
                                    view_hz=view_hz or cfg.installer.view_hz))
    clock = FakeClock()
    counts = RunCounts(Geometry(cfg.geometry))
    loop = build_loop(cfg, CONFIG.parent, clock, sinks=[counts])
    inst = attach_installer(cfg, CONFIG, loop, counts, NoAudit(), clock)
    assert inst is not None
    views: list = []
    inst.view.listeners.append(views.append)
    probe = _Probe(loop, inst.view)
    kinds = ("off", "on", "off", "main") if compare else ("off", "on")
    setups = {"on": (inst.view._pool(), inst.view.persons, inst.view.recheck_faces)}
    if compare:
        setups["main"] = _main_setup(cfg, inst.view)
    now = int(clock.wall())
    token = sign_installer_token(key, device_id=cfg.device.id, not_before=now - 1, expires=now + 3600, token_id="b")
    stop, watching, polling = threading.Event(), threading.Event(), threading.Lock()
    served: list[int] = []
    base = f"http://127.0.0.1:{inst.server.port}"
    client = threading.Thread(target=_client, args=(base, _session(base, token), stop, watching, served, polling),
                              daemon=True)
    client.start()
    try:
        spent = _alternate(loop, inst, frames, block, watching, polling, warmup, probe, kinds, setups)
    finally:
        stop.set()
        client.join(5)
        _use(inst.view, setups["on"])
        inst.stop()
        if compare:
            setups["main"][0].shutdown(wait=True)
    lines = _report(spent, inst.view, loop.stats.frames, block, cfg.installer.view_hz, len(served)) + probe.lines()
    if privacy:
        lines.append(_privacy(views))
    return "\n".join(lines)


def _report(spent: dict[str, list], view, frames: int, block: int, view_hz: float,  # noqa: ANN001
            served: int) -> list[str]:
    """The rates, ratios and CPU a frame of each kind of block, and the view's counts."""
    rate = {k: n / s if s else 0.0 for k, (s, n, _, _) in spent.items()}
    cpu = {k: c / n if n else 0.0 for k, (_, n, c, _) in spent.items()}  # process CPU seconds a frame
    name = {"off": "nobody watching:", "on": "page polled:", "main": "page polled, main's worker:"}
    lines = [
        f"installer view cost on PETS09 ({frames} frames, blocks of {block}, view_hz {view_hz} at the footage's "
        f"7 fps):",
        *(f"  {name[k]:28s}{spent[k][1]} frames in {spent[k][0]:.1f} s = {rate[k]:.2f} frames/s"
          + (f", {spent[k][3]} views = {spent[k][3] / spent[k][0]:.2f} views/s" if k != "off" else "")
          for k in spent),
        f"  {view.made} views made, {view.withheld} withheld, {view.failed} failed, {served} JPEGs served; "
        f"{view.checks} JPEG checks ({view.checks / max(1, view.made + view.withheld):.2f} a view)"
        f"{_tiles(view.persons)}; "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
    ]
    for k in (k for k in spent if k != "off"):
        ratio = rate[k] / rate["off"] if rate["off"] else 0.0
        cpu_ratio = cpu["off"] / cpu[k] if cpu[k] else 0.0
        what = "the view" if k == "on" else "main's worker"
        lines += [f"  ratio {k}/off {ratio:.3f}: {what} costs {1 - ratio:.1%} of the loop's frame rate (goal: at "
                  f"most 10%)",
                  f"  process CPU a frame: {cpu['off'] * 1e3:.0f} ms nobody watching, {cpu[k] * 1e3:.0f} ms {k} "
                  f"(client included): CPU-bound, the rate ratio would be {cpu_ratio:.3f} (costs {1 - cpu_ratio:.1%})"]
    return lines


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
    ap.add_argument("--compare", action="store_true",
                    help="blocks of main's worker (the loop's priority and threads) between the others")
    ap.add_argument("--view-hz", type=float, help="views a second of footage at most (default: the config's)")
    args = ap.parse_args(argv)
    data.ensure_env()
    print(run(args.frames, args.block, args.privacy, args.warmup, args.compare, args.view_hz))
    return 0


if __name__ == "__main__":
    sys.exit(main())

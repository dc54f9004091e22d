"""What taking a sample costs the fixed-rate loop: the gate inline in the tick against the gate in the worker.

The loop runs in real time (the system clock, the mock camera at the source's 7 fps, the real person model
with the bench config's tiling) on PETS09 (vtest.avi), and a sample is forced due `--due-s` seconds in; each
side runs until the sample is made, then `--tail-s` more. The sample is the real one: de-identification, the
real gate (`firmware.samples.gate`: the person model on 1x1..6x6 grids, both BlazeFace variants on 1..6
grids), JPEG encoding. A side with no sample at all is the baseline. Per side, on the same footage in one
run: overruns (deadlines missed), longest tick, tick p99, and how long the sample took to make.

`python -m bench.sample_stall [--due-s 5] [--tail-s 5]`"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.lib import data
from bench.lib.replay import pets_video_config
from firmware.cli.assemble import build_detector, build_loop, model_input_size
from firmware.config import UmbraConfig
from firmware.config.samples import SamplesConfig
from firmware.privacy.audit import NoAudit
from firmware.samples.gate import sample_faces, sample_persons
from firmware.samples.hook import InlineRunner, JobRunner, SampleHook, SampleWorker, ThreadRunner
from firmware.samples.taking import SampleScheduler, SampleSlot, SampleTaker
from firmware.sensing.loop import SensorLoop
from hal.clock import SystemClock

CONFIG = Path(__file__).parent / "configs" / "pets09.toml"


class DueOnce(SampleScheduler):
    """One slot, due from wall time `at` on."""

    def __init__(self, cfg: SamplesConfig, at: float) -> None:
        super().__init__(cfg, random.Random(0))
        self.at: float | None = at

    def due(self, now: float) -> SampleSlot | None:
        if self.at is None or now < self.at:
            return None
        self.at = None
        return SampleSlot(now, None)


class NoStore:
    def purge_samples(self, before: float) -> int:
        return 0


@dataclass
class Side:
    name: str
    seconds: float
    ticks: int
    overruns: int
    longest_ms: float
    p99_ms: float
    made_s: float | None
    outcome: str


class Watch:
    """Times every tick, notes when the sample came due (a job was handed over, or made inline) and when it
    was made, and stops the loop `tail_s` after that (with no sample: `due_s + tail_s` in)."""

    def __init__(self, worker: SampleWorker | None, due_s: float, tail_s: float) -> None:
        self.worker, self.due_s, self.tail_s = worker, due_s, tail_s
        self.t0 = time.monotonic()
        self.ticks_ns: list[int] = []
        self.due_at: float | None = None
        self.made_at: float | None = None
        self.loop: SensorLoop | None = None

    def _finished(self) -> int:
        w = self.worker
        return w.taken + w.dropped + w.errors if w is not None else 0

    def attach(self, loop: SensorLoop) -> None:
        self.loop, tick = loop, loop.tick

        def timed() -> bool:
            t0 = time.perf_counter_ns()
            ok = tick()
            self.ticks_ns.append(time.perf_counter_ns() - t0)
            if self.due_at is None and self.worker is not None and (self.worker.busy or self._finished()):
                self.due_at = t0 / 1e9
            return ok

        loop.tick = timed  # type: ignore[method-assign]

    def sink(self, _result: object) -> None:
        now = time.monotonic()
        if self.made_at is None and self._finished():
            self.made_at = now
        last = self.made_at if self.worker is not None else (self.t0 + self.due_s if now >= self.t0 + self.due_s
                                                             else None)
        if last is not None and now >= last + self.tail_s and self.loop is not None:
            self.loop.stop()


def run_side(cfg: UmbraConfig, video: Path, detector, gate, runner: JobRunner | None, due_s: float,
             tail_s: float) -> Side:
    from hal.video import VideoCamera

    clock = SystemClock()
    cam = VideoCamera(video, lores_size=model_input_size(cfg), main_size=cfg.camera.main_size,
                      fps=cfg.camera.fps or None, clock=clock, realtime=True, loop=True)
    put: list[Mapping[str, Any]] = []
    worker = None
    if runner is not None:
        taker = SampleTaker(cfg.samples, DueOnce(cfg.samples, clock.wall() + due_s), gate[0], put.append, NoAudit(),
                            person_finder=gate[1])
        worker = SampleWorker(taker, NoAudit(), runner, shutdown_wait_s=600.0)
    watch = Watch(worker, due_s, tail_s)
    loop = build_loop(cfg, CONFIG.parent, clock, camera=cam, detector=detector, sinks=[watch.sink])
    if worker is not None:
        loop.frame_hooks.append(SampleHook(worker.taker, NoStore(), NoAudit(), worker))
    watch.attach(loop)
    stats = loop.run()
    seconds = time.monotonic() - watch.t0
    ms = np.array(watch.ticks_ns) / 1e6
    if worker is None:
        return Side("no sample", seconds, stats.ticks, stats.overruns, float(ms.max()), float(np.percentile(ms, 99)),
                    None, "-")
    worker.close()
    outcome = "sent" if put else "dropped" if worker.dropped else "error" if worker.errors else "not made"
    made = watch.made_at - watch.due_at if watch.made_at is not None and watch.due_at is not None else None
    name = "gate inline" if isinstance(runner, InlineRunner) else "gate in worker"
    return Side(name, seconds, stats.ticks, stats.overruns, float(ms.max()), float(np.percentile(ms, 99)), made,
                outcome)


@data.clean_exit
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sample_stall", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--due-s", type=float, default=5.0, help="seconds into each side the sample comes due")
    ap.add_argument("--hz", type=float, default=None, help="the loop's rate (default: the config's detect_hz)")
    ap.add_argument("--tail-s", type=float, default=5.0, help="seconds each side runs on after the sample")
    args = ap.parse_args(argv)
    cfg, video = pets_video_config()
    if args.hz:
        cfg = replace(cfg, loop=replace(cfg.loop, detect_hz=args.hz, emit_hz=min(cfg.loop.emit_hz, args.hz)))
    detector = build_detector(cfg, CONFIG.parent)
    gate = sample_faces(cfg.samples), sample_persons(cfg.samples, cfg.detector.model, cfg.detector.threads)
    print(f"PETS09 vtest.avi in real time at {cfg.loop.detect_hz:g} Hz (period {1000 / cfg.loop.detect_hz:.0f} ms), "
          f"detector {detector.backend} tiles {cfg.detector.tiles}, {os.cpu_count()} CPUs; sample due at "
          f"{args.due_s:g} s, {args.tail_s:g} s after it is made")
    sides = [run_side(cfg, video, detector, gate, r, args.due_s, args.tail_s)
             for r in (None, InlineRunner(), ThreadRunner())]
    print(f"{'side':<16}{'run':>7}{'ticks':>7}{'overruns':>10}{'per s':>7}{'longest tick':>14}{'tick p99':>12}"
          f"{'sample made in':>16}  outcome")
    for s in sides:
        made = f"{s.made_s:.2f} s" if s.made_s is not None else "-"
        print(f"{s.name:<16}{s.seconds:>5.1f} s{s.ticks:>7}{s.overruns:>10}{s.overruns / s.seconds:>7.2f}"
              f"{s.longest_ms:>11.1f} ms{s.p99_ms:>9.1f} ms{made:>16}  {s.outcome}")
    inline, worker = sides[1], sides[2]
    print(f"longest tick, inline / worker: {inline.longest_ms / worker.longest_ms:.1f}x; overruns "
          f"{inline.overruns} -> {worker.overruns} (baseline without a sample: {sides[0].overruns})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

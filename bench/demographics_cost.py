"""What demographics cost (`python -m bench.demographics cost`).

1. One estimate on the shared face photos: process CPU time (all threads) and wall, median and p95, split into
   the face search (BlazeFace with keypoints) and the two networks (chips, ONNX Runtime).
2. The bench run (`umbra bench run`: PETS09 vtest.avi through the mock camera, the real SSD detector on CPU,
   the real tracker, its fake clock) with demographics off and on, rounds interleaved in one process: frames
   per second wall and the ratio. On the bench's fake clock the time guard never defers (the clock does not
   move while the loop works), so every due crop is estimated: the "on" rows are the most the hook can cost at
   its per-tick bound. PETS09's people are small (heads of 10-25 px): most head crops hold no face BlazeFace
   can find, and those cost a face search only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench import data
from bench.run import PETS_START_WALL

CONFIG = Path(__file__).parent / "configs" / "pets09.toml"


def per_estimate(faces: list[dict]) -> float:
    """Prints one estimate's cost; returns its median process CPU in ms."""
    import cv2

    from hal.agegender import OnnxAgeGender

    cpu, wall, search = [], [], []
    with OnnxAgeGender() as est:
        for f in faces:
            bgr = cv2.imread(str(f["file"]))
            if bgr is None:
                raise SystemExit(f"bench.demographics: cannot read image {f['file']}")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            c0, w0 = time.process_time_ns(), time.perf_counter_ns()
            found = est.faces(rgb)
            c1 = time.process_time_ns()
            if found:
                est.estimate_face(rgb, found[0])
            cpu.append(time.process_time_ns() - c0)
            wall.append(time.perf_counter_ns() - w0)
            search.append(c1 - c0)
            rgb.fill(0)
    cpu_ms, wall_ms, search_ms = (np.array(x) / 1e6 for x in (cpu, wall, search))
    print(f"1. one estimate ({len(faces)} face photos of 200 x 200, ONNX Runtime 1 thread a model): process CPU "
          f"median {np.median(cpu_ms):.2f} ms, p95 {np.percentile(cpu_ms, 95):.2f} ms; wall median "
          f"{np.median(wall_ms):.2f} ms; of which the face search (BlazeFace) median {np.median(search_ms):.2f} ms")
    return float(np.median(cpu_ms))


def loop_run(cfg, frames: int, on: bool) -> dict:  # noqa: ANN001
    from firmware.cli.assemble import build_loop
    from firmware.demographics.hook import build_demographics_hook
    from firmware.privacy.accountant import Accountant
    from hal.clock import FakeClock

    clock = FakeClock(start_wall=PETS_START_WALL)
    loop = build_loop(cfg, CONFIG.parent, clock, sinks=[lambda r: None])
    out: dict = {"estimated": 0, "no_face": 0, "records": 0}
    hook = None
    with tempfile.TemporaryDirectory() as tmp:
        acc = Accountant(Path(tmp) / "budget.sqlite", cfg.demographics.budgets())
        if on:
            hook = build_demographics_hook(cfg.demographics, loop, [lambda recs: None], acc)
            assert hook is not None
            loop.track_hooks.append(hook)
        t0, c0 = time.perf_counter(), time.process_time()
        stats = loop.run(max_ticks=frames)
        out["elapsed"], out["cpu"] = time.perf_counter() - t0, time.process_time() - c0
        if hook is not None:
            out["records"] = len(hook.close_window(clock.wall()))
            out["estimated"], out["no_face"], out["calls"] = hook.estimated, hook.no_face, hook.estimated + \
                hook.no_face + hook.errors
        acc.close()
    out["fps"] = stats.frames / out["elapsed"]
    out["cpu_fps"] = stats.frames / out["cpu"]  # frames per second of the process's CPU: robust to a busy machine
    return out


def cost(args: argparse.Namespace) -> int:
    from bench.demographics import data_dir, load_faces
    from firmware.config import load
    from firmware.config.demographics import DemographicsConfig

    faces = load_faces(data_dir(args.data))
    est_ms = per_estimate(faces)
    ddir = data.ensure(verbose=False)
    os.environ.setdefault("UMBRA_DATA_DIR", str(ddir))
    cfg = load(CONFIG)
    cfg = replace(cfg, camera=replace(cfg.camera, source=str(data.find("video/vtest.avi"))),
                  demographics=DemographicsConfig(enabled=True, window_s=60))
    loop_run(cfg, 20, False)  # warm the model and the caches
    rows: dict[bool, list[dict]] = {False: [], True: []}
    for _ in range(args.rounds):
        for on in (False, True):
            rows[on].append(loop_run(cfg, args.frames, on))
    print(f"2. bench run, {args.frames} frames of PETS09 a run, {args.rounds} rounds off/on interleaved")
    for key, what in (("fps", "frames/s wall"), ("cpu_fps", "frames per CPU-second (all threads)")):
        off = np.median([r[key] for r in rows[False]])
        on = np.median([r[key] for r in rows[True]])
        per_round = ", ".join(f"{b[key] / a[key] - 1:+.1%}" for a, b in zip(rows[False], rows[True], strict=True))
        print(f"   {what}: off {off:.2f}, on {on:.2f}: {on / off - 1:+.1%} (per round: {per_round})")
        if key == "cpu_fps":
            frame_ms = 1000 / off
            bound = cfg.demographics.max_estimates_per_tick * est_ms / frame_ms
            print(f"   worst case, a face found on every tick ({cfg.demographics.max_estimates_per_tick} estimate a "
                  f"tick at {est_ms:.2f} ms CPU, a frame {frame_ms:.1f} ms CPU off): {-bound / (1 + bound):+.1%} "
                  f"frames per CPU-second")
    last = rows[True][-1]
    print(f"   with demographics on, a run: {last['calls']} head crops given to the estimator, {last['estimated']} "
          f"estimates (a face found), {last['records']} zone histograms released at the close (60 s windows, "
          f"k=5, epsilon 1)")
    return 0

"""Demographics benchmarks: the estimator's accuracy, the released histograms' utility, and the cost.

    python -m bench.demographics accuracy [--data DIR]
    python -m bench.demographics utility [--windows 200] [--seed 1] [--chains 1,6]
    python -m bench.demographics cost [--frames 300]

accuracy: the shared labeled faces (faces/labels.csv, 420 UTKFace photos, 35 per age band and gender), each
through the device's estimator (BlazeFace keypoints, eye-aligned chips, dlib's ONNX networks): gender
accuracy, age band exact and within one band, mean absolute age error, per band and gender, beside always
answering the most common class (chosen on the other half of the faces: the set is balanced by construction).
utility: synthetic windows of 50, 200 and 1,000 visitors drawn (with replacement) from those faces; the
total-variation distance between the released histogram's distribution and the true band-by-gender
distribution of the window's visitors, at k=5 and epsilon=1, beside the same distance with no privacy (the
estimator's own error) and the distance of the noise alone (released against the estimator's histogram), at
max_chains_per_person m = 1 (the release as it was, one count a person: not what the device can promise) and at
the default m (noise of scale m/epsilon; each visitor here is one chain, so only the noise and the k gate change).
cost: one estimate's CPU time on a face photo (split into the face search and the networks), and the bench
run (`umbra bench run`: PETS09 vtest.avi through the mock camera, the real SSD detector on CPU, the real
tracker, its fake clock) with demographics off and on, rounds interleaved in one process: frames per second
wall and per CPU-second, and the ratio. On the bench's fake clock the time guard never defers (the clock does
not move while the loop works), so every due crop is estimated: the most the hook can cost at its per-tick
bound. PETS09's people are small: most head crops hold no face BlazeFace can find and cost a face search only,
so the worst case (a face on every tick) is printed beside it, from the same run's figures.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.lib import data
from bench.lib.data import clean_exit
from bench.lib.images import read_rgb
from bench.lib.replay import PETS_START_WALL
from firmware.config.demographics import MAX_CHAINS, DemographicsConfig
from firmware.demographics.bands import BANDS, GENDERS, band_index, band_of, gender_of
from firmware.demographics.release import distribution, histogram, release, tv_distance

CONFIG = Path(__file__).parent / "configs" / "pets09.toml"


def data_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("UMBRA_DATA_DIR"):
        return Path(os.environ["UMBRA_DATA_DIR"])
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def load_faces(data: Path) -> list[dict[str, Any]]:
    path = data / "faces" / "labels.csv"
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise SystemExit(f"bench.demographics: cannot read {path}: {e.strerror}") from None
    return [{"file": data / "faces" / r["file"], "age": int(r["age"]), "band": band_index(r["age_band"]),
             "gender": GENDERS.index(r["gender"])} for r in rows]


def estimate_all(faces: list[dict[str, Any]], size: int = 0) -> list[tuple[float, float] | None]:
    """(expected age, p_male) of each face photo, None where no face was found. `size`: the photo first shrunk
    to size x size and put in a head-crop-like frame 1.5 times as large (a smaller face, as a camera sees it)."""
    import cv2

    from hal.agegender import OnnxAgeGender

    out: list[tuple[float, float] | None] = []
    with OnnxAgeGender() as est:
        for f in faces:
            rgb = read_rgb(f["file"])
            if size:
                small = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
                rgb = np.full((size * 3 // 2, size * 3 // 2, 3), 90, np.uint8)
                rgb[size // 4:size // 4 + size, size // 4:size // 4 + size] = small
            e = est.estimate(rgb)
            rgb.fill(0)
            out.append(None if e is None else (e.age, e.p_male))
    return out


def _scores(faces: Sequence[dict[str, Any]], preds: Sequence[tuple[float, float] | None]) -> dict[str, float]:
    found = [(f, p) for f, p in zip(faces, preds, strict=True) if p is not None]
    if not found:
        return {"n": len(faces), "found": 0.0, "gender": float("nan"), "band": float("nan"),
                "within1": float("nan"), "mae": float("nan")}
    g = np.mean([gender_of(p[1]) == f["gender"] for f, p in found])
    b = np.array([band_of(p[0]) - f["band"] for f, p in found])
    mae = np.mean([abs(p[0] - f["age"]) for f, p in found])
    return {"n": len(faces), "found": len(found) / len(faces), "gender": float(g), "band": float(np.mean(b == 0)),
            "within1": float(np.mean(np.abs(b) <= 1)), "mae": float(mae)}


def _baseline(faces: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Always the most common gender, band and (median) age of the other half, averaged over both halves."""
    halves = (faces[0::2], faces[1::2])
    out = {"gender": 0.0, "band": 0.0, "within1": 0.0, "mae": 0.0}
    for fit, test in (halves, halves[::-1]):
        gender = int(np.bincount([f["gender"] for f in fit], minlength=2).argmax())
        band = int(np.bincount([f["band"] for f in fit], minlength=len(BANDS)).argmax())
        age = float(np.median([f["age"] for f in fit]))
        out["gender"] += np.mean([f["gender"] == gender for f in test]) / 2
        out["band"] += np.mean([f["band"] == band for f in test]) / 2
        out["within1"] += np.mean([abs(f["band"] - band) <= 1 for f in test]) / 2
        out["mae"] += np.mean([abs(f["age"] - age) for f in test]) / 2
    return out


def accuracy(args: argparse.Namespace) -> int:
    faces = load_faces(data_dir(args.data))
    t0 = time.perf_counter()
    preds = estimate_all(faces)
    took = time.perf_counter() - t0
    print(f"estimator on {len(faces)} labeled face photos ({took / len(faces) * 1000:.1f} ms a photo, face "
          f"detection included; faces with no face found are left out of the rates and counted in 'found')")
    print(f"{'group':<16}{'n':>4}{'found':>7}{'gender':>8}{'band':>7}{'±1 band':>9}{'MAE y':>7}")

    def row(name: str, idx: list[int]) -> None:
        s = _scores([faces[i] for i in idx], [preds[i] for i in idx])
        print(f"{name:<16}{s['n']:>4}{s['found']:>7.0%}{s['gender']:>8.1%}{s['band']:>7.1%}{s['within1']:>9.1%}"
              f"{s['mae']:>7.1f}")

    for b, label in enumerate(BANDS):
        for g, gender in enumerate(GENDERS):
            row(f"{label} {gender}", [i for i, f in enumerate(faces) if f["band"] == b and f["gender"] == g])
    for b, label in enumerate(BANDS):
        row(f"{label} all", [i for i, f in enumerate(faces) if f["band"] == b])
    for g, gender in enumerate(GENDERS):
        row(f"all {gender}", [i for i, f in enumerate(faces) if f["gender"] == g])
    row("all", list(range(len(faces))))
    base = _baseline(faces)
    print(f"{'most common':<16}{len(faces):>4}{'':>7}{base['gender']:>8.1%}{base['band']:>7.1%}"
          f"{base['within1']:>9.1%}{base['mae']:>7.1f}   (class of the other half; age: its median)")
    print("smaller faces (each photo shrunk, in a head crop 1.5 times its size; BlazeFace's face box is about the "
          "photo's width, median 0.96, and the eyes 0.41 of it apart: a 28 px photo is a 27 px face, eyes 11 px apart)")
    for size in (100, 64, 40, 28):
        s = _scores(faces, estimate_all(faces, size))
        print(f"{f'{size} px photo':<16}{s['n']:>4}{s['found']:>7.0%}{s['gender']:>8.1%}{s['band']:>7.1%}"
              f"{s['within1']:>9.1%}{s['mae']:>7.1f}")
    confusion = np.zeros((len(BANDS), len(BANDS)), int)
    for f, p in zip(faces, preds, strict=True):
        if p is not None:
            confusion[f["band"], band_of(p[0])] += 1
    print("age band confusion (rows: true band, columns: estimated band)")
    print(" " * 8 + "".join(f"{b:>7}" for b in BANDS))
    for b, label in enumerate(BANDS):
        print(f"{label:<8}" + "".join(f"{c:>7}" for c in confusion[b]))
    return 0


def utility(args: argparse.Namespace) -> int:
    faces = load_faces(data_dir(args.data))
    preds = estimate_all(faces)
    found = [i for i, p in enumerate(preds) if p is not None]
    rng = np.random.default_rng(args.seed)
    noise = random.Random(args.seed)  # the device draws from the OS CSPRNG; a seeded source replays the bench

    print(f"synthetic windows of visitors drawn from {len(faces)} labeled faces ({len(found)} with a face found; "
          f"the others are visitors the device cannot estimate and are missing from its histogram); "
          f"{args.windows} windows per row; TV distance to the window's true band x gender distribution")
    print(f"{'visitors':>8}{'k':>3}{'eps':>5}{'m':>3}{'cells':>12}{'released':>10}{'no privacy':>12}"
          f"{'noise only':>12}{'zones out':>11}")
    # m = 1: the release as it was (one count a person, not true of the device); the default m: the bound in force
    ms = sorted(set(args.chains or (1, DemographicsConfig().max_chains_per_person)))
    for n, m, suppress in itertools.product((50, 200, 1000), ms, (False, True)):
        cfg = DemographicsConfig(enabled=True, k=5, epsilon=1.0, suppress_cells=suppress, max_chains_per_person=m)
        tv_rel, tv_est, tv_noise, held = [], [], [], 0
        for _ in range(args.windows):
            drawn = rng.integers(0, len(faces), n)
            truth = np.zeros((len(BANDS), len(GENDERS)), np.int64)
            for i in drawn:
                truth[faces[i]["band"], faces[i]["gender"]] += 1
            est = histogram(preds[i] for i in drawn if preds[i] is not None)
            recs = release({"z": est}, cfg, 0, rng=noise)
            tv_est.append(tv_distance(distribution(est), distribution(truth)))
            if not recs:
                held += 1
                continue
            cells = recs[0]["counts"]
            tv_rel.append(tv_distance(distribution(cells), distribution(truth)))
            tv_noise.append(tv_distance(distribution(cells), distribution(est)))
        print(f"{n:>8}{cfg.k:>3}{cfg.epsilon:>5.1f}{m:>3}{'per cell k' if suppress else 'zone k':>12}"
              f"{_mean(tv_rel):>10.3f}{_mean(tv_est):>12.3f}{_mean(tv_noise):>12.3f}{held:>11}")
    return 0


def _mean(v: list[float]) -> float:
    return float(np.mean(v)) if v else float("nan")  # nan: every window withheld


def per_estimate(faces: list[dict]) -> float:
    """Prints one estimate's cost; returns its median process CPU in ms."""

    from hal.agegender import OnnxAgeGender

    cpu, wall, search = [], [], []
    with OnnxAgeGender() as est:
        for f in faces:
            rgb = read_rgb(f["file"])
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
    from firmware.config import load
    from firmware.config.demographics import DemographicsConfig

    faces = load_faces(data_dir(args.data))
    est_ms = per_estimate(faces)
    data.ensure_env()
    cfg = load(CONFIG)
    cfg = replace(cfg, camera=replace(cfg.camera, source=str(data.need("video/vtest.avi"))),
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


def _chains(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: whole numbers, comma separated") from None
    if not out or not all(1 <= m <= MAX_CHAINS for m in out):
        raise argparse.ArgumentTypeError(f"{text!r}: each from 1 to {MAX_CHAINS}")
    return out


@clean_exit
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.demographics", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    for name in ("accuracy", "utility", "cost"):
        p = sub.add_parser(name)
        p.add_argument("--data", default=None, help="the bench data folder (default: ../shared/data)")
        if name == "utility":
            p.add_argument("--windows", type=int, default=200)
            p.add_argument("--seed", type=int, default=1)
            p.add_argument("--chains", type=_chains, default=None,
                           help="max_chains_per_person values, comma separated (default: 1 and the config's)")
        if name == "cost":
            p.add_argument("--frames", type=int, default=300)
            p.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if args.what == "accuracy":
        return accuracy(args)
    if args.what == "utility":
        return utility(args)
    return cost(args)


if __name__ == "__main__":
    sys.exit(main())

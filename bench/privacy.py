"""The privacy/utility table: what the aggregates keep of the truth at each privacy setting, beside the
published table for this kind of sensor.

Data: the shared ETH/UCY pedestrian trajectories (five real scenes, 36 minutes, world coordinates) and the
PETS09-S2L1 ground truth, each scene one zone (or, with `--zones 4`, four quadrants at its median x and y) with
two count lines (through the medians), fed to `firmware.privacy.analytics` tick by tick (2.5 Hz) as the loop would,
in 15-minute (the default) and 1-minute windows. The trajectories
are ground truth, so the figures isolate what privacy costs; the sensor's own errors (tracking and counting
on PETS09: `umbra bench run`) come on top, as they do in the published figures.

Accuracy = 1 - sum |released - true| / sum true over every (window, zone) for occupancy (mean people present)
and every (window, line, direction) for flow; a suppressed value counts as 0. `visitors` is the same for the
number of different people in the zone during the window (the other reading of "occupancy"). Noisy rows are
averaged over `--runs` seeds. The true values are the unbounded ones, so contribution bounds count against us.

`umbra bench privacy [--trajectories FILE ...] [--windows 900 60] [--zones 1|4] [--runs 20]`"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.lib import data
from bench.lib.scenes import truth
from firmware.config.privacy import PrivacyConfig
from firmware.config.sensing import GeometryConfig, LineConfig, ZoneConfig
from firmware.privacy.accountant import Accountant
from firmware.privacy.analytics import Analytics
from firmware.privacy.dp import laplace_pmf
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import TickResult
from firmware.sensing.quantize import GroundState

SCENES = ("biwi_eth", "biwi_hotel", "crowds_zara01", "crowds_zara02", "students001")
PUBLISHED = {  # configuration -> (occupancy accuracy, flow accuracy), the published table
    "no privacy": (0.992, 0.978), "k=3": (0.987, 0.961), "k=5": (0.973, 0.934),
    "k=5, eps=2.0": (0.941, 0.892), "k=5, eps=1.0": (0.896, 0.827), "k=5, eps=0.5": (0.813, 0.714),
}
ROWS = (("no privacy", 1, None), ("k=3", 3, None), ("k=5", 5, None),
        ("k=5, eps=2.0", 5, 2.0), ("k=5, eps=1.0", 5, 1.0), ("k=5, eps=0.5", 5, 0.5))
FRAME_S = 0.4  # ETH/UCY frames are 10 apart at 25 fps


@dataclass(frozen=True)
class Scene:
    name: str
    ticks: list[TickResult]
    geometry: Geometry


def load_trajectories(path: Path) -> tuple[np.ndarray, float]:
    """(rows of frame, id, x, y in metres, seconds per frame unit) from an ETH/UCY file (frame id x y, frames
    10 apart at 25 fps) or a MOT15 gt.txt with world coordinates (columns 8-9, its seqinfo.ini frame rate)."""
    if path.name == "gt.txt":
        from bench.lib.sequences import fps_of

        gt = np.loadtxt(path, delimiter=",", ndmin=2)
        return np.column_stack((gt[:, 0], gt[:, 1], gt[:, 7], gt[:, 8])), 1.0 / fps_of(path)
    rows = np.loadtxt(path, ndmin=2)
    if rows.shape[1] < 4:
        raise SystemExit(f"{path}: expected 'frame id x y' rows (ETH/UCY format)")
    return rows[:, :4], FRAME_S / 10


def scene(path: Path, zones: int = 1) -> Scene:
    rows, unit = load_trajectories(path)
    mx, my = np.median(rows[:, 2]), np.median(rows[:, 3])
    lo, hi = rows[:, 2:4].min(axis=0) - 1, rows[:, 2:4].max(axis=0) + 1
    quads = [ZoneConfig("site", ((lo[0], lo[1]), (hi[0], lo[1]), (hi[0], hi[1]), (lo[0], hi[1])))]
    if zones == 4:
        quads = []
        for qx, (x0, x1) in (("w", (lo[0], mx)), ("e", (mx, hi[0]))):
            for qy, (y0, y1) in (("s", (lo[1], my)), ("n", (my, hi[1]))):
                quads.append(ZoneConfig(qy + qx, ((x0, y0), (x1, y0), (x1, y1), (x0, y1))))
    geo = Geometry(GeometryConfig(zones=tuple(quads), lines=(
        LineConfig("vertical", (mx, lo[1]), (mx, hi[1])), LineConfig("horizontal", (lo[0], my), (hi[0], my)))))
    order = np.argsort(rows[:, 0], kind="stable")
    rows = rows[order]
    frames, starts = np.unique(rows[:, 0], return_index=True)
    bounds = list(starts[1:]) + [len(rows)]
    ticks, last = [], {}
    for f, lo_i, hi_i in zip(frames, starts, bounds, strict=True):
        cur = rows[lo_i:hi_i]
        ids = cur[:, 1].astype(np.int64)
        xy = cur[:, 2:4].astype(float)
        known = np.array([int(i) in last for i in ids], bool)
        crossings = []
        if known.any():
            prev = np.array([last[int(i)] for i in ids[known]])
            crossings = geo.crossings(ids[known], prev, xy[known])
        last = {int(i): xy[j] for j, i in enumerate(ids)}
        ticks.append(TickResult(float((f - frames[0]) * unit), [], crossings,
                                GroundState(ids, xy, np.zeros_like(xy), np.full(len(ids), 1.7))))
    name = path.parent.parent.name if path.name == "gt.txt" else path.stem
    return Scene(name, ticks, geo)


def default_paths() -> list[Path]:
    rels = [f"trajectories/eth_ucy/{s}.txt" for s in SCENES] + ["mot/MOT15/PETS09-S2L1/gt/gt.txt"]
    paths = [data.find(r) for r in rels]
    missing = [r for r, p in zip(rels, paths, strict=True) if p is None]
    if missing:
        raise SystemExit(data.missing_message(missing))
    return [p for p in paths if p is not None]


def released(records: list[dict]) -> tuple[dict, dict, dict]:
    occ, flow, visitors = {}, {}, {}
    for r in records:
        if r["metric"] == "occupancy" and r["zone"] != "*":
            occ[(r["window_start"], r["zone"])] = r["values"][1]
            visitors[(r["window_start"], r["zone"])] = r["values"][0]
        elif r["metric"] == "line_flow":
            for d, v in zip("+-", r["values"], strict=True):
                if v is not None:
                    flow[(r["window_start"], r["zone"], d)] = v
    return occ, flow, visitors


def accuracy(true: dict, got: dict) -> tuple[float, float]:
    err = sum(abs(got.get(k, 0.0) - v) for k, v in true.items()) + sum(v for k, v in got.items() if k not in true)
    return 1.0 - err / max(sum(true.values()), 1e-9), float(sum(true.values()))


def run_scene(sc: Scene, k: int, eps: float | None, window_s: int, seed: int,
              timings: list[float] | None = None) -> tuple[tuple[float, float], ...]:
    """(accuracy, total true) for occupancy, flow and visitors on one scene."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = PrivacyConfig(window_s=window_s, k=k, epsilon=eps or 1.0, daily_epsilon=10_000.0,
                            budget_file=str(Path(tmp) / "budget.sqlite"))
        out: list[dict] = []
        acc = Accountant(cfg.budget_file, cfg.budgets())
        an = Analytics(cfg, sc.geometry, acc, out.extend, rng=random.Random(seed), noise=eps is not None)
        if timings is not None:  # CPU of each release (aggregation, bounding, noise, records)
            close = an.close_window

            def timed_close() -> None:
                t0 = time.thread_time()
                close()
                timings.append((time.thread_time() - t0) * 1e3)

            an.close_window = timed_close  # type: ignore[method-assign]
        tick_cpu = 0.0
        for t in sc.ticks:
            t0 = time.thread_time()
            an(t)
            tick_cpu += time.thread_time() - t0
        if timings is not None:
            timings.insert(0, tick_cpu * 1e6 / len(sc.ticks))  # first entry: accumulation per tick, us
        an.close_window()
        acc.close()
    return tuple(accuracy(t, g) for t, g in zip(truth(sc.ticks, sc.geometry, window_s), released(out),
                                                  strict=True))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="umbra bench privacy", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trajectories", type=Path, nargs="+", help="ETH/UCY-format files or MOT15 gt.txt "
                    "(default: the five shared ETH/UCY scenes and PETS09-S2L1)")
    ap.add_argument("--windows", type=int, nargs="+", default=[900, 60], help="window lengths in seconds")
    ap.add_argument("--zones", type=int, choices=(1, 4), default=1, help="the scene as one zone, or quadrants")
    ap.add_argument("--runs", type=int, default=20, help="seeds per noisy row")
    ap.add_argument("--plots", type=Path, default=Path("out/privacy"), help="where the PNG pictures go")
    args = ap.parse_args(argv)
    scenes = [scene(p, args.zones) for p in (args.trajectories or default_paths())]
    minutes = sum(sc.ticks[-1].wall for sc in scenes) / 60
    print(f"{len(scenes)} scenes ({', '.join(sc.name for sc in scenes)}), {minutes:.0f} minutes of real "
          f"trajectories; {args.zones} zone(s) and 2 count lines per scene; noisy rows averaged over {args.runs} seeds")
    for window in args.windows:
        table(scenes, window, args.runs)
        print(ceiling(scenes, window, epsilon=1.0))
    cpu = []
    pets = [sc for sc in scenes if sc.name.startswith("PETS")] or scenes[:1]
    for window in sorted(set(args.windows)):
        timings: list[float] = []
        run_scene(pets[0], 5, 1.0, window, 0, timings)
        per_tick, releases = timings[0], timings[1:]
        cpu.append(f"{window} s windows: release {np.median(releases):.2f} ms (max {max(releases):.2f}), "
                   f"accumulation {per_tick:.0f} us per tick")
    print(f"CPU on {pets[0].name} at k=5 eps=1: " + "; ".join(cpu) + " (goal: <= 5 ms per window)")
    from bench.lib.privacy_plots import draw

    for path in draw(scenes[0], args.plots):
        print(f"picture: {path}")
    return 0


def ceiling(scenes: list[Scene], window: int, epsilon: float, caps=(15, 30, 45, 60, 90, 120, 180, 240, 360)) -> str:
    """What a release of the mean through one fixed presence cap can reach: for each cap, the expected accuracy
    when the occupancy stream's whole epsilon goes to the mean (no peak, no suppression, no zone bound), as
    1 - E|discrete Laplace noise - truncation loss| / true, exactly from the noise's distribution; the best
    cap for the scene mean, picked in hindsight (a device cannot). The device does better by picking its cap
    per window from the noised dwell histogram (firmware.privacy.analytics.presence_cap); this line shows by
    how much."""
    main = [sc for sc in scenes if not sc.name.startswith("PETS")] or scenes
    per_cap = []
    for cap in caps:
        accs = []
        for sc in main:
            presence: dict[tuple[int, str, int], int] = defaultdict(int)  # (window, zone, id) -> seconds
            last = None
            for t in sc.ticks:
                if int(t.wall) == last:
                    continue
                last = int(t.wall)
                w = int(t.wall // window) * window
                for tid, z in zip(t.ground.track_ids, sc.geometry.zone_of(t.ground.xy), strict=True):
                    if z is not None:
                        presence[(w, z, int(tid))] += 1
            by_cell: dict[tuple[int, str], list[int]] = defaultdict(list)
            for (w, z, _), secs in presence.items():
                by_cell[(w, z)].append(secs)
            err = true = 0.0
            for secs in by_cell.values():
                d = np.array(secs)
                scale = min(cap, window) / epsilon
                z = np.arange(-int(40 * scale) - 1, int(40 * scale) + 2)
                pmf = laplace_pmf(z, scale)
                loss = float(np.maximum(d - cap, 0).sum())
                err += float((pmf * np.abs(z - loss)).sum())
                true += float(d.sum())
            accs.append(1 - err / true)
        per_cap.append((float(np.mean(accs)), cap))
    best, cap = max(per_cap)
    return (f"a fixed cap at eps={epsilon:g}, {window} s windows, for comparison: at best {best:.1%} occupancy on "
            f"the scene mean, with all of the occupancy stream's epsilon on the mean and the cap that was best in "
            f"hindsight ({cap} s)")


def table(scenes: list[Scene], window: int, runs: int) -> None:
    """One row per configuration: the mean over the trajectory scenes (ETH/UCY), PETS09 apart (a 2-minute
    clip), the published figures, and every scene's occupancy/flow."""
    main_scenes = [i for i, sc in enumerate(scenes) if not sc.name.startswith("PETS")] or list(range(len(scenes)))
    pets = [i for i, sc in enumerate(scenes) if sc.name.startswith("PETS")]
    print(f"\n{window} s windows: accuracy = 1 - sum|released - true| / sum true (suppressed counts as 0)")
    print("(s.e.: the standard error of the scene mean's occupancy/flow over the seeds; at 15 minutes each ETH/UCY"
          " scene is a single window, so a few seeds move the mean)")
    print(f"{'configuration':15s} {'occupancy':>9s} {'flow':>6s} {'s.e.':>9s} {'visitors':>8s} | {'PETS09':>13s} | "
          f"{'published':>9s} {'flow':>6s} | {'verdict':14s} | occupancy/flow per scene")
    for name, k, eps in ROWS:
        per_scene, per_seed = [], []
        for sc in scenes:
            res = [run_scene(sc, k, eps, window, seed) for seed in range(runs if eps else 1)]
            per_scene.append([float(np.mean([r[i][0] for r in res])) for i in range(3)])
            per_seed.append([[r[i][0] for i in range(2)] for r in res])
        occ, flow, vis = (float(np.mean([per_scene[j][i] for j in main_scenes])) for i in range(3))
        seed_means = np.mean([per_seed[j] for j in main_scenes], axis=0)  # (seeds, occupancy/flow)
        se = seed_means.std(axis=0, ddof=1) / np.sqrt(len(seed_means)) if len(seed_means) > 1 else np.zeros(2)
        pets_col = f"{per_scene[pets[0]][0]:6.1%}/{per_scene[pets[0]][1]:5.1%}" if pets else "-"
        p_occ, p_flow = PUBLISHED[name]
        verdict = "beats both" if occ > p_occ and flow > p_flow else (
            "occupancy only" if occ > p_occ else ("flow only" if flow > p_flow else "behind"))
        detail = "  ".join(f"{ps[0]:.1%}/{ps[1]:.1%}" for ps in per_scene)
        se_col = f"{se[0]:.1%}/{se[1]:.1%}"
        print(f"{name:15s} {occ:9.1%} {flow:6.1%} {se_col:>9s} {vis:8.1%} | {pets_col:>13s} | {p_occ:9.1%} "
              f"{p_flow:6.1%} | {verdict:14s} | {detail}")


if __name__ == "__main__":
    raise SystemExit(main())

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
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.lib.privacy_eval import PUBLISHED, ROWS, Scene, default_paths, run_scene, scene
from firmware.privacy.dp import laplace_pmf

__all__ = ["Scene", "ceiling", "main", "table"]


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
            for durations in by_cell.values():
                d = np.array(durations)
                scale = min(cap, window) / epsilon
                noise = np.arange(-int(40 * scale) - 1, int(40 * scale) + 2)
                pmf = laplace_pmf(noise, scale)
                loss = float(np.maximum(d - cap, 0).sum())
                err += float((pmf * np.abs(noise - loss)).sum())
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

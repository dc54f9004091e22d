"""Release CPU per window: the thread CPU of closing one window of the aggregates (bounding, noise, the
budget's durable transaction, the records) at k=5 eps=1, at PETS density (PETS09-S2L1) and at the densest
shared scene (students001), for 15- and 1-minute windows, and of one step of the running totals (binary
tree, firmware.privacy.continual, its durable state write included). Goals: at most 5 ms per window at PETS
density and 15 ms at the densest scene.

`python -m bench.privacy_cost [--runs 5]` (also `umbra bench privacy-cost`)."""

from __future__ import annotations

import argparse

import numpy as np

from bench.lib.privacy_eval import default_paths, run_continual, run_scene, scene

GOALS = {"PETS09-S2L1": 5.0, "students001": 15.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="umbra bench privacy-cost", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="seeds (repeats) per scene")
    args = ap.parse_args(argv)
    scenes = {sc.name: sc for sc in (scene(p) for p in default_paths()) if sc.name in GOALS}
    for name, goal in GOALS.items():
        sc = scenes[name]
        people = np.mean([len(t.ground.track_ids) for t in sc.ticks])
        parts, worst = [], 0.0
        for window in (900, 60):
            releases: list[float] = []
            for seed in range(args.runs):
                timings: list[float] = []
                run_scene(sc, 5, 1.0, window, seed, timings)
                releases += timings[1:]
            worst = max(worst, float(np.median(releases)))
            parts.append(f"{window} s windows {np.median(releases):.2f} ms (max {max(releases):.2f})")
        steps: list[float] = []
        for seed in range(args.runs):
            run_continual(sc, 5, 1.0, seed, timings=steps)
        parts.append(f"running totals {np.median(steps):.2f} ms per step (max {max(steps):.2f})")
        worst = max(worst, float(np.median(steps)))
        print(f"{name} ({people:.1f} people in view on average): release CPU " + "; ".join(parts)
              + f" (goal: <= {goal:g} ms per window: {'met' if worst <= goal else 'NOT met'}, medians)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Release CPU per window: the thread CPU of closing one window of the aggregates (bounding, noise, the
budget's durable transaction, the records) at k=5 eps=1, at PETS density (PETS09-S2L1) and at the densest
shared scene (students001), for 15- and 1-minute windows, and of one step of the running totals (binary
tree, firmware.privacy.continual, its durable state write included). Goals: at most 5 ms per window at PETS
density and 15 ms at the densest scene.

A whole day of running-total steps (1440, one tick a minute carrying the scene's mean crossings and people
per minute) shows the late steps too, whose gate sums more and larger blocks; `--against FILE` (say
/work/main/firmware/privacy/continual.py) times another continual.py's steps in the same run, interleaved
seed by seed, and prints the ratio (ratios, not times, compare across a loaded machine).

`python -m bench.privacy_cost [--runs 5] [--against FILE]` (also `umbra bench privacy-cost`)."""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bench.lib.privacy_eval import Scene, default_paths, run_continual, run_scene, scene
from firmware.config.privacy import PrivacyConfig
from firmware.privacy import continual
from firmware.privacy.accountant import Accountant
from firmware.sensing.geometry import Crossing
from firmware.sensing.loop import TickResult
from firmware.sensing.quantize import GroundState

GOALS = {"PETS09-S2L1": 5.0, "students001": 15.0}
TREES: dict[str, dict[str, Any]] = {"default (cap 2, even)": {},
                                    "chosen (cap 1, weight 2)": {"tree_crossing_cap": 1, "tree_level_weight": 2}}


def load(path: Path) -> ModuleType:
    """Another continual.py (main's, say) as its own module, on this checkout's other modules."""
    spec = importlib.util.spec_from_file_location("continual_against", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a Python file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look themselves up there
    spec.loader.exec_module(mod)
    return mod


def day_steps(sc: Scene, module: ModuleType, seed: int, **settings: Any) -> list[float]:
    """Thread CPU (ms) of each of a day's 1440 step releases, one tick a minute with the scene's mean people
    in view and crossings a minute (new people each minute, each crossing once)."""
    minutes = sc.ticks[-1].wall / 60
    per_min = max(1, round(sum(len(t.crossings) for t in sc.ticks) / minutes))
    people = max(1, round(float(np.mean([len(t.ground.track_ids) for t in sc.ticks]))))
    lines = [ln.name for ln in sc.geometry.config.lines]
    xy = np.array(sc.ticks[len(sc.ticks) // 2].ground.xy[:1].tolist() or [[0.0, 0.0]])
    out: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = replace(PrivacyConfig(k=5, tree_enabled=True, tree_step_s=60, tree_epsilon=1.0), **settings)
        acc = Accountant(Path(tmp) / "budget.sqlite", cfg.budgets())
        tree = module.ContinualRelease(cfg, sc.geometry, acc, lambda r: None, Path(tmp) / "tree.json",
                                       rng=random.Random(seed))
        for m in range(1440):
            ids = np.arange(m * 1000, m * 1000 + people, dtype=np.int64)
            cross = [Crossing(int(ids[i % people]), lines[i % len(lines)], "+-"[i % 2]) for i in range(per_min)]
            pos = np.repeat(xy, people, axis=0)
            tree(TickResult(m * 60.0 + 1, [], cross, GroundState(ids, pos, np.zeros_like(pos), np.full(people, 1.7))))
            if m:
                t0 = time.thread_time()
                tree.close_step()
                out.append((time.thread_time() - t0) * 1e3)
        acc.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="umbra bench privacy-cost", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="seeds (repeats) per scene")
    ap.add_argument("--against", type=Path, help="another continual.py to time the day's steps against")
    ap.add_argument("--day-runs", type=int, default=2, help="seeds of the whole day of steps")
    args = ap.parse_args(argv)
    other = load(args.against) if args.against else None
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
        for label, settings in TREES.items():
            mine: list[float] = []
            theirs: list[float] = []
            for seed in range(args.day_runs):
                mine += day_steps(sc, continual, seed, **settings)
                if other is not None and not settings.get("tree_level_weight"):
                    theirs += day_steps(sc, other, seed, **settings)
            line = (f"  a day of steps, {label}: median {np.median(mine):.2f} ms, p99 {np.percentile(mine, 99):.2f}, "
                    f"max {max(mine):.2f}")
            if theirs:
                line += (f"; against {args.against}: median {np.median(theirs):.2f} ms, ratio "
                         f"{np.median(mine) / np.median(theirs):.2f}")
            elif other is not None:
                line += f"; {args.against} has no level weight (its default, above, is the comparison)"
            print(line + f" (goal <= {goal:g} ms: {'met' if np.percentile(mine, 99) <= goal else 'NOT met'} at p99)",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

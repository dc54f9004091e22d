"""The privacy/utility table: what the aggregates keep of the truth at each privacy setting, beside the
published table for this kind of sensor.

Data: the shared ETH/UCY pedestrian trajectories (five real scenes, 36 minutes, world coordinates), each
scene split into four zones (quadrants at its median x and y) and two count lines (through the medians),
fed to `firmware.analytics` tick by tick (2.5 Hz) as the loop would, in 1-minute windows. The trajectories
are ground truth, so the figures isolate what privacy costs; the sensor's own errors (tracking and counting
on PETS09: `umbra bench run`) come on top, as they do in the published figures.

Accuracy = 1 - sum |released - true| / sum true over every (window, zone) for occupancy (mean people present)
and every (window, line, direction) for flow; a suppressed value counts as 0. `visitors` is the same for the
number of different people in the zone during the window (the other reading of "occupancy"). Noisy rows are
averaged over `--runs` seeds. The true values are the unbounded ones, so contribution bounds count against us.

`python -m bench.privacy [--runs 5] [--window 300] [--zones 1 4]`"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench import data
from firmware.accountant import Accountant
from firmware.analytics import Analytics, PrivacyConfig
from firmware.geometry import Geometry, GeometryConfig, LineConfig, ZoneConfig
from firmware.loop import TickResult
from firmware.quantize import GroundState

SCENES = ("biwi_eth", "biwi_hotel", "crowds_zara01", "crowds_zara02", "students001")
PUBLISHED = {  # configuration -> (occupancy accuracy, flow accuracy), the published table
    "no privacy": (0.992, 0.978), "k=3": (0.987, 0.961), "k=5": (0.973, 0.934),
    "k=5, eps=2.0": (0.941, 0.892), "k=5, eps=1.0": (0.896, 0.827), "k=5, eps=0.5": (0.813, 0.714),
}
ROWS = (("no privacy", 1, None), ("k=3", 3, None), ("k=5", 5, None),
        ("k=5, eps=2.0", 5, 2.0), ("k=5, eps=1.0", 5, 1.0), ("k=5, eps=0.5", 5, 0.5))
FRAME_S = 0.4  # ETH/UCY frames are 10 apart at 25 fps


def scene_ticks(name: str, zones: int = 4) -> tuple[list[TickResult], Geometry]:
    path = data.find(f"trajectories/eth_ucy/{name}.txt")
    if path is None:
        raise SystemExit(data.missing_message([f"trajectories/eth_ucy/{name}.txt"]))
    rows = np.loadtxt(path)
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
    frames = np.unique(rows[:, 0])
    ticks, last = [], {}
    for f in frames:
        cur = rows[rows[:, 0] == f]
        ids = cur[:, 1].astype(np.int64)
        xy = cur[:, 2:4].astype(float)
        known = np.array([int(i) in last for i in ids], bool)
        crossings = []
        if known.any():
            prev = np.array([last[int(i)] for i in ids[known]])
            crossings = geo.crossings(ids[known], prev, xy[known])
        last = {int(i): xy[j] for j, i in enumerate(ids)}
        wall = (f - frames[0]) / 10 * FRAME_S
        ticks.append(TickResult(float(wall), [], crossings,
                                GroundState(ids, xy, np.zeros_like(xy), np.full(len(ids), 1.7))))
    return ticks, geo


def truth(ticks: list[TickResult], geo: Geometry, window_s: int) -> tuple[dict, dict]:
    """Unbounded true values: mean present per (window, zone) at 1 Hz, crossings per (window, line, dir)."""
    present: dict[tuple[int, str], list[int]] = defaultdict(list)
    seen: dict[tuple[int, str], set[int]] = defaultdict(set)
    samples: dict[int, int] = defaultdict(int)
    flow: dict[tuple[int, str, str], int] = defaultdict(int)
    last_second = None
    for t in ticks:
        w = int(t.wall // window_s) * window_s
        for c in t.crossings:
            flow[(w, c.line, c.direction)] += 1
        if int(t.wall) != last_second:
            last_second = int(t.wall)
            samples[w] += 1
            zones = geo.zone_of(t.ground.xy)
            for z in geo.config.zones:
                present[(w, z.name)].append(sum(1 for x in zones if x == z.name))
            for tid, x in zip(t.ground.track_ids, zones, strict=True):
                if x is not None:
                    seen[(w, x)].add(int(tid))
    occ = {key: float(np.sum(v)) / samples[key[0]] for key, v in present.items()}
    visitors = {key: float(len(v)) for key, v in seen.items()}
    return occ, dict(flow), visitors


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


def run_row(scenes, k: int, eps: float | None, window_s: int, seed: int, **cfg_kw) -> tuple[float, ...]:
    """(occupancy, flow, visitors) accuracy over all scenes."""
    err = np.zeros(3)
    total = np.zeros(3)
    for ticks, geo in scenes:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = PrivacyConfig(window_s=window_s, k=k, epsilon=eps or 1.0, daily_epsilon=1000.0,
                                budget_file=str(Path(tmp) / "budget.sqlite"), **cfg_kw)
            out: list[dict] = []
            acc = Accountant(cfg.budget_file, cfg.budgets())
            an = Analytics(cfg, geo, acc, out.extend, rng=random.Random(seed), noise=eps is not None)
            for t in ticks:
                an(t)
            an.close_window()
            acc.close()
        for i, (true, got) in enumerate(zip(truth(ticks, geo, window_s), released(out), strict=True)):
            a, n = accuracy(true, got)
            err[i] += (1 - a) * n
            total[i] += n
    return tuple(1 - err / total)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.privacy", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="seeds per noisy row")
    ap.add_argument("--window", type=int, default=300, help="window in seconds (60 to 86400)")
    ap.add_argument("--zones", type=int, choices=(1, 4), nargs="+", default=[1, 4],
                    help="zones per scene: the whole scene and/or quadrants (one table each)")
    args = ap.parse_args(argv)
    for zones in args.zones:
        table(args, zones)
    return 0


def table(args: argparse.Namespace, zones: int) -> None:
    scenes = [scene_ticks(s, zones) for s in SCENES]
    minutes = sum(t[0][-1].wall for t in scenes) / 60
    per_zone = np.mean([v for sc in scenes for v in truth(*sc, args.window)[0].values()])
    print(f"ETH/UCY trajectories: {len(scenes)} scenes, {minutes:.0f} minutes, {args.window} s windows, "
          f"{zones} zone(s) and 2 lines per scene (mean people present per zone and window: {per_zone:.1f}); "
          f"noisy rows averaged over {args.runs} seeds")
    print(f"{'configuration':16s} {'occupancy':>10s} {'published':>10s} {'flow':>8s} {'published':>10s}  "
          f"verdict          {'visitors':>9s}")
    for name, k, eps in ROWS:
        runs = [run_row(scenes, k, eps, args.window, seed) for seed in range(args.runs if eps else 1)]
        occ, flow, vis = (float(np.mean([r[i] for r in runs])) for i in range(3))
        p_occ, p_flow = PUBLISHED[name]
        verdict = "beats both" if occ > p_occ and flow > p_flow else (
            "occupancy only" if occ > p_occ else ("flow only" if flow > p_flow else "behind"))
        print(f"{name:16s} {occ:10.1%} {p_occ:10.1%} {flow:8.1%} {p_flow:10.1%}  {verdict:15s} {vis:10.1%}")
    print()


if __name__ == "__main__":
    raise SystemExit(main())

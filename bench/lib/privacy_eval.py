"""What the privacy benchmarks share (bench.privacy, bench.privacy_loso, bench.privacy_cost): the scenes (the
shared ETH/UCY trajectories and PETS09-S2L1 ground truth as ticks, one zone and two count lines each), one
run of the aggregates over a scene and its accuracy, and one run of the running totals (firmware.privacy.continual)
and theirs. A benchmark imports this, never another benchmark."""

from __future__ import annotations

import random
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, overload

import numpy as np

from bench.lib import data
from bench.lib.scenes import truth
from firmware.config.privacy import PrivacyConfig
from firmware.config.sensing import GeometryConfig, LineConfig, ZoneConfig
from firmware.privacy.accountant import Accountant
from firmware.privacy.analytics import Analytics
from firmware.privacy.combine import combine_records, monotone
from firmware.privacy.continual import ContinualRelease
from firmware.sensing.geometry import Crossing, Geometry
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
    ticks: Sequence[TickResult]
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
    ticks: list[TickResult] = []
    last: dict[int, np.ndarray] = {}
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
              timings: list[float] | None = None, records: list[dict] | None = None,
              **settings: Any) -> tuple[tuple[float, float], ...]:
    """(accuracy, total true) for occupancy, flow and visitors on one scene; `settings`: other [privacy] keys;
    `records`: gets the released records."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = PrivacyConfig(window_s=window_s, k=k, epsilon=eps or 1.0, daily_epsilon=10_000.0,
                            budget_file=str(Path(tmp) / "budget.sqlite"))
        cfg = replace(cfg, **settings)
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
    if records is not None:
        records.extend(out)
    return tuple(accuracy(t, g) for t, g in zip(truth(sc.ticks, sc.geometry, window_s), released(out),
                                                  strict=True))


def windows_of(sc: Scene, window_s: int, **settings: Any) -> list[tuple[Any, float]]:
    """The scene's accumulated windows (with each one's last wall time), as `Analytics` holds them when it
    closes one: what `run_seeds` releases again and again. Accumulation draws no noise, so one pass serves
    every seed and every setting that does not change it (the window, the heatmap cell)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = replace(PrivacyConfig(window_s=window_s, daily_epsilon=10_000.0,
                                    budget_file=str(Path(tmp) / "budget.sqlite")), **settings)
        acc = Accountant(cfg.budget_file, cfg.budgets())
        an = Analytics(cfg, sc.geometry, acc, lambda recs: None)
        stash: list[tuple[Any, float]] = []

        def keep() -> None:
            if an._w is not None:
                stash.append((an._w, float(an._last_wall or 0.0)))
            an._w = None

        an.close_window = keep  # type: ignore[method-assign]
        for t in sc.ticks:
            an(t)
        keep()
        acc.close()
    return stash


def run_seeds(sc: Scene, k: int, eps: float, window_s: int, seeds: Sequence[int],
              windows: list[tuple[Any, float]] | None = None, records: list[dict] | None = None,
              **settings: Any) -> list[tuple[tuple[float, float], ...]]:
    """`run_scene`'s figures for each seed, the scene accumulated once (`windows_of`, or `windows` given) and
    each window closed by the same `Analytics.close_window` under each seed's noise: the same records as
    `run_scene` with that seed (tested), in a fraction of the time. `records`: gets every seed's records."""
    windows = windows if windows is not None else windows_of(sc, window_s)
    true = truth(sc.ticks, sc.geometry, window_s)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = replace(PrivacyConfig(window_s=window_s, k=k, epsilon=eps, daily_epsilon=100_000.0,
                                    budget_file=str(Path(tmp) / "budget.sqlite")), **settings)
        acc = Accountant(cfg.budget_file, cfg.budgets())  # one budget for all seeds: a day's is never spent here
        for seed in seeds:
            recs: list[dict] = []
            an = Analytics(cfg, sc.geometry, acc, recs.extend, rng=random.Random(seed))
            for w, last in windows:
                an._w, an._last_wall = w, last
                an.close_window()
            out.append(tuple(accuracy(t, g) for t, g in zip(true, released(recs), strict=True)))
            if records is not None:
                records.extend(recs)
        acc.close()
    return out




def running_truth(sc: Scene, step_s: int) -> tuple[dict[tuple[int, str, str], int], dict[tuple[int, str], int]]:
    """The true running totals at the end of each step: crossings per (step, line, direction) and visitors
    (different people seen in the zone) per (step, zone), from the scene's start (its day's start)."""
    last = int(sc.ticks[-1].wall // step_s)
    per_step: dict[tuple[int, str, str], int] = defaultdict(int)
    new: dict[tuple[int, str], int] = defaultdict(int)
    seen: set[tuple[int, str]] = set()
    for t in sc.ticks:
        m = int(t.wall // step_s)
        for c in t.crossings:
            per_step[(m, c.line, c.direction)] += 1
        for tid, z in zip(t.ground.track_ids, sc.geometry.zone_of(t.ground.xy), strict=True):
            if z is not None and (int(tid), z) not in seen:
                seen.add((int(tid), z))
                new[(m, z)] += 1
    flow, visitors = {}, {}
    for ln in sc.geometry.config.lines:
        for d in "+-":
            run = 0
            for m in range(last + 1):
                run += per_step[(m, ln.name, d)]
                flow[(m, ln.name, d)] = run
    for zc in sc.geometry.config.zones:
        run = 0
        for m in range(last + 1):
            run += new[(m, zc.name)]
            visitors[(m, zc.name)] = run
    return flow, visitors


def run_continual(sc: Scene, k: int, eps: float, seed: int, step_s: int = 60,
                  timings: list[float] | None = None, records: list[dict] | None = None,
                  **settings: Any) -> tuple[float, float]:
    """Accuracy of the released running totals (flow_total, visitors_total) against `running_truth`, over
    every step, line and direction (zone): 1 - sum |released - true| / sum true, a held-back value as 0.
    `timings` gets the CPU (ms) of each step's release; `records`: gets the released records."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = replace(PrivacyConfig(k=k, tree_enabled=True, tree_step_s=step_s, tree_epsilon=eps), **settings)
        acc = Accountant(Path(tmp) / "budget.sqlite", cfg.budgets())
        out: list[dict] = []
        tree = ContinualRelease(cfg, sc.geometry, acc, out.extend, Path(tmp) / "tree.json", rng=random.Random(seed))
        if timings is not None:
            close = tree.close_step

            def timed_close() -> None:
                t0 = time.thread_time()
                close()
                timings.append((time.thread_time() - t0) * 1e3)

            tree.close_step = timed_close  # type: ignore[method-assign]
        for t in sc.ticks:
            tree(t)
        tree.close()
        acc.close()
    if records is not None:
        records.extend(out)
    flow_true, vis_true = running_truth(sc, step_s)
    flow_got: dict[tuple[int, str, str], float] = {}
    vis_got: dict[tuple[int, str], float] = {}
    for r in out:
        m = r["window_start"] // step_s
        if r["metric"] == "flow_total":
            for d, v in zip("+-", r["values"], strict=True):
                if v is not None:
                    flow_got[(m, r["zone"], d)] = v
        elif r["values"][0] is not None:
            vis_got[(m, r["zone"])] = r["values"][0]
    return accuracy(flow_true, flow_got)[0], accuracy(vis_true, vis_got)[0]


def summed_flow(sc: Scene, records: list[dict], step_s: int = 60) -> float:
    """The baseline: running totals summed from the per-window line_flow releases (suppressed as 0), against
    the same truth as `run_continual`."""
    flow_true, _ = running_truth(sc, step_s)
    per: dict[tuple[int, str, str], float] = defaultdict(float)
    for r in records:
        if r["metric"] == "line_flow":
            for d, v in zip("+-", r["values"], strict=True):
                per[(r["window_start"] // step_s, r["zone"], d)] += v or 0
    got = {}
    for (m, line, d) in flow_true:
        got[(m, line, d)] = sum(per[(j, line, d)] for j in range(m + 1))
    return accuracy(flow_true, got)[0]


def combined_flow(sc: Scene, tree_records: list[dict], minute_records: list[dict], step_s: int = 60,
                  consistent: str = "") -> float:
    """The reader's estimate (firmware.privacy.combine): the tree's released running totals combined with the
    released per-minute line_flow values by inverse variance, against the same truth as `run_continual` (a
    withheld total as 0). The two record lists must come from independent noise (different seeds).
    `consistent`: "causal" or "day", then made non-decreasing (`combine.monotone`, live or at the day's end)."""
    flow_true, _ = running_truth(sc, step_s)
    got: dict[tuple[int, str, str], float] = {}
    for (day, line, d), series in combine_records([*tree_records, *minute_records]).items():
        if consistent:
            series = monotone(series, causal=consistent == "causal")
        for i, est in enumerate(series):
            if est is not None:
                got[(day // step_s + i, line, d)] = est[0]
    return accuracy(flow_true, got)[0]


class Replay(Sequence[TickResult]):
    """A scene played back to back for `seconds` (a day, say): each pass's people under new track ids, made
    tick by tick when asked (a day of ticks would not fit in memory as objects)."""

    def __init__(self, ticks: Sequence[TickResult], seconds: float, gap_s: float = 1.0) -> None:
        self.ticks, self.period = ticks, ticks[-1].wall + gap_s
        self.passes = max(1, int(seconds // self.period))

    def __len__(self) -> int:
        return self.passes * len(self.ticks)

    @overload
    def __getitem__(self, i: int) -> TickResult: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[TickResult]: ...

    def __getitem__(self, i: int | slice) -> TickResult | Sequence[TickResult]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k, j = divmod(i, len(self.ticks))
        t, off = self.ticks[j], k * 1_000_000
        g = t.ground
        return TickResult(t.wall + k * self.period, [],
                          [Crossing(c.track_id + off, c.line, c.direction) for c in t.crossings],
                          GroundState(g.track_ids + off, g.xy, g.velocity, g.height_m))


def day_of(sc: Scene, seconds: float = 86_400.0) -> Scene:
    """The scene as a whole day (or `seconds`) of the same traffic."""
    return Scene(f"{sc.name} x{Replay(sc.ticks, seconds).passes}", Replay(sc.ticks, seconds),
                 sc.geometry)

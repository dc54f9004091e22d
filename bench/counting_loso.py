"""Honest tuning of the device's line counter (firmware.sensing.geometry.LineCounter): leave one scene out.

Every counting scene is a group: PETS09-S2L1 (the real SSD on CPU through the whole device path, 3x2 tiles and
gated, at 7 fps and at the Pi 4's rate and budget, bench.gating's four runs) and the countscenes scenes
(MOT17-02/04/09, MOT20-01 on the scripted detector, lines drawn before any run, bench.countscenes), each at its
native rate and the Pi 4's. The loop's own view of each run (per tick: the seen tracks' ids and exact ground
points, the tick's time) is recorded once (cached under out/cache/, keyed by the sources that make it) and the
counter is replayed on it, tick by tick, as the loop calls it.

For each scene left out, the counter's settings (hold, and restart, smoothing and joining each on or off: see
`Setting`, GRID) are chosen from a small grid by the least total error ((net + gross) / true, summed over the
rows of the OTHER scenes), then reported on the left-out scene's rows, beside the old counter (band 0.5 m,
hold 0.5 s, none of the three) and the setting best over every row (tuned on everything, printed
only beside the left-out figures). Net: per line and way, |counted - true| summed (a miss and a false count
cancel); gross: crossings matched one by one (same line and way, at most bench.lib.explain.WINDOW_S apart, as
many as can be: the misses plus the false counts), against the gt's own crossings (bench.lib.crossings).

`python -m bench.counting_loso [--scenes PETS09-S2L1 MOT17-09-FRCNN ...] [--explain SCENE] [--causes]`"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import pickle
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from bench.lib import data
from bench.lib.crossings import crossing_events
from bench.lib.detcache import CACHE
from bench.lib.explain import WINDOW_S
from bench.lib.replay import CONFIG, PETS_START_WALL
from bench.lib.scenarios import PI4_HZ, gated, pi4
from firmware.config.sensing import LineConfig
from firmware.sensing.geometry import LineCounter

ROOT = Path(__file__).resolve().parents[1]
PETS = "PETS09-S2L1"
PETS_GT = "mot/MOT15/PETS09-S2L1/gt/gt.txt"


@dataclass
class Run:
    """One scene at one rate: what the loop's line counter is handed, tick by tick, and the gt's crossings."""

    scene: str
    rate: str
    fps: float  # the source's frame rate (frame numbers -> seconds)
    lines: list[LineConfig]
    ticks: list[tuple[int, np.ndarray, np.ndarray, float]]  # (source frame, track ids, ground xy, tick time s)
    truth: list[tuple[int, str, str, int]]  # (frame, line, direction, gt id) of every true crossing
    rows: list | None = None  # the tracker's confirmed rows (frame, id, x, y, w, h), for explaining


def _key(*parts: str) -> str:
    """A cache key from the sources that make a run (everything the loop runs but the counter) and `parts`."""
    h = hashlib.sha256()
    for folder in ("firmware/sensing", "firmware/config", "firmware/cli", "hal"):
        for p in sorted((ROOT / folder).glob("*.py")):
            if p.name != "geometry.py":
                h.update(p.read_bytes())
    for p in (CONFIG, ROOT / "bench/lib/replay.py", ROOT / "bench/lib/motscenes.py"):
        h.update(p.read_bytes())
    h.update("|".join(parts).encode())
    return h.hexdigest()[:16]


def _cached(name: str, make: Callable[[], Run]) -> Run:
    path = CACHE / f"countloso-{name}.pkl"
    if path.exists():
        with path.open("rb") as f:
            return _Unpickler(f).load()
    run = make()
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(run, f)
    tmp.replace(path)
    return run


class _Unpickler(pickle.Unpickler):
    """A cached run pickled by `python -m bench.counting_loso` names its class `__main__.Run`."""

    def find_class(self, module: str, name: str):
        return Run if name == "Run" else super().find_class(module, name)


def _loop_ticks(cfg, camera=None, detector=None) -> tuple[list, list]:
    """Run the device path; per tick the loop's own counter input (frame, ids, xy, time), and the tracker's rows."""
    from bench.lib.replay import RecordingTracker
    from firmware.cli.assemble import build_loop
    from hal.clock import FakeClock

    clock = FakeClock(start_wall=PETS_START_WALL)
    ticks: list = []
    seq = [0]

    def keep(r) -> None:  # a TickResult
        ticks.append((seq[0], np.asarray(r.ground.track_ids).copy(), np.asarray(r.ground.xy).copy(),
                      clock.monotonic_ns() / 1e9))

    kw = {} if camera is None else {"camera": camera(clock), "detector": detector}
    loop = build_loop(cfg, CONFIG.parent, clock, sinks=[keep], **kw)
    recorder = RecordingTracker(loop.tracker)
    loop.tracker = recorder

    def seen(frame, dets, wall) -> None:
        seq[0] = recorder.seq = frame.seq

    loop.frame_hooks.append(seen)
    loop.run()
    return ticks, recorder.rows


def _truth(paths: list[np.ndarray], frames: list[np.ndarray], ids: list[int], lines: list[LineConfig],
           last: int) -> list[tuple[int, str, str, int]]:
    out = []
    for c in crossing_events(paths, lines):
        f = int(frames[c.path][c.step])
        if f <= last:
            out.append((f, c.line, c.direction, ids[c.path]))
    return sorted(out)


def _gt_paths(gt: np.ndarray, last: int) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    gt = gt[gt[:, 0] <= last]
    gt = gt[np.lexsort((gt[:, 0], gt[:, 1]))]
    ids = [int(i) for i in np.unique(gt[:, 1])]
    return [gt[gt[:, 1] == i][:, 7:9] for i in ids], [gt[gt[:, 1] == i][:, 0] for i in ids], ids


PETS_RUNS = ("tiles 7 fps", "gated 7 fps", f"Pi {PI4_HZ:g} fps tiles", f"Pi {PI4_HZ:g} fps gated")


def pets_run(label: str) -> Run:
    from firmware.config import load

    data.ensure_env()
    cfg = load(CONFIG)
    cfg = replace(cfg, camera=replace(cfg.camera, source=str(data.need("video/vtest.avi"))))
    d = cfg.detector
    cfg = {PETS_RUNS[0]: cfg, PETS_RUNS[1]: gated(cfg), PETS_RUNS[2]: replace(pi4(cfg), detector=d),
           PETS_RUNS[3]: pi4(cfg)}[label]
    lines = list(cfg.geometry.lines)

    def make() -> Run:
        print(f"  recording {PETS} {label} (real SSD)...", file=sys.stderr, flush=True)
        ticks, rows = _loop_ticks(cfg)
        gt = np.loadtxt(data.need(PETS_GT), delimiter=",", ndmin=2)
        last = max(t[0] for t in ticks)
        return Run(PETS, label, 7.0, lines, ticks, _truth(*_gt_paths(gt, last), lines, last), rows)

    return _cached(f"{PETS}-{label.replace(' ', '_')}-{_key(PETS, label)}", make)


def scene_runs(name: str) -> list[Run]:
    from bench.lib import motscenes as cs
    from firmware.config import load
    from hal.scripted import ScriptedDetector
    from hal.synthetic import SyntheticCamera

    data.ensure_env()
    sc = cs.scene(name)
    base = load(CONFIG)
    out = []
    frames = int(sc.gt[:, 0].max())
    for label, hz, realtime in ((f"{sc.fps:g} fps", sc.fps, False), (f"Pi {PI4_HZ:g} fps", PI4_HZ, True)):
        cfg = cs.scene_config(base, sc, hz)

        def make(cfg=cfg, realtime=realtime, label=label) -> Run:
            print(f"  recording {name} {label} (scripted detector)...", file=sys.stderr, flush=True)
            def cam(clock, realtime=realtime) -> SyntheticCamera:
                return SyntheticCamera(clock, lores_size=(8, 8), main_size=None, source_size=sc.size, fps=sc.fps,
                                       frames=frames, realtime=realtime)

            ticks, rows = _loop_ticks(cfg, cam, ScriptedDetector(sc.gt[:, :6], sc.size))
            last = max(t[0] for t in ticks)
            return Run(name, label, sc.fps, list(sc.lines), ticks, _truth(*_gt_paths(sc.gt, last), list(sc.lines),
                                                                          last), rows)

        out.append(_cached(f"{name}-{label.replace(' ', '_')}-{_key(name, label)}", make))
    return out


def runs(scenes: Iterable[str]) -> list[Run]:
    from bench.lib.motscenes import SCENES

    out: list[Run] = []
    for name in scenes:
        if name == PETS:
            out += [pets_run(label) for label in PETS_RUNS]
        elif name in SCENES:
            out += scene_runs(name)
        else:
            raise SystemExit(f"unknown scene {name!r}: {PETS} or one of {', '.join(SCENES)}")
    return out


Counted = list[tuple[int, int, str, str]]  # (frame, track id, line, direction) per counted crossing


def count(run: Run, make: Callable[[list[LineConfig]], object]) -> Counted:
    """Replay the loop's counter input through a counter (`make(lines)`, anything with LineCounter's
    `update`), tick by tick, then quiet ticks until every held crossing is decided; each crossing at the frame
    of the tick that counted it (a quiet tick's: the last frame)."""
    counter = make(run.lines)
    out: Counted = []
    none_ids, none_xy = np.zeros(0, np.int64), np.zeros((0, 2))
    last_f, last_t = run.ticks[-1][0], run.ticks[-1][3]
    quiet = [(last_f, none_ids, none_xy, last_t + k) for k in (1.0, 2.0, 5.0, 11.0)]
    for f, ids, xy, t in [*run.ticks, *quiet]:
        out += [(f, c.track_id, c.line, c.direction) for c in counter.update(ids, xy, t)]  # type: ignore[attr-defined]
    return out


@dataclass(frozen=True)
class Errors:
    true: int
    net: int
    missed: list[int]  # indices into run.truth
    false: list[int]  # indices into the counted crossings

    @property
    def gross(self) -> int:
        return len(self.missed) + len(self.false)


def errors(run: Run, counted: Counted) -> Errors:
    """Net (per line and way) and gross (crossings matched one by one, same line and way, at most WINDOW_S
    apart, as many as can be) error of `counted` against the run's true crossings."""
    truth = Counter((ln, d) for _, ln, d, _ in run.truth)
    got = Counter((ln, d) for _, _, ln, d in counted)
    net = sum(abs(got[k] - truth[k]) for k in set(got) | set(truth))
    cost = np.full((len(run.truth), len(counted)), 1e6)
    for i, (tf, tl, td, _) in enumerate(run.truth):
        for j, (cf, _, cl, cd) in enumerate(counted):
            dt = abs(tf - cf) / run.fps
            if (tl, td) == (cl, cd) and dt <= WINDOW_S:
                cost[i, j] = dt
    r, c = linear_sum_assignment(cost) if cost.size else (np.zeros(0, int), np.zeros(0, int))
    ok = [(int(i), int(j)) for i, j in zip(r, c, strict=True) if cost[i, j] < 1e6]
    hit_t, hit_c = {i for i, _ in ok}, {j for _, j in ok}
    return Errors(len(run.truth), net, [i for i in range(len(run.truth)) if i not in hit_t],
                  [j for j in range(len(counted)) if j not in hit_c])


@dataclass(frozen=True)
class Setting:
    """The counter's settings (LineCounter's, and [geometry]'s count_* keys)."""

    band: float = 0.5
    hold: float = 0.5
    smooth: float = 0.0
    restart: bool = False
    join: float = 0.0

    def counter(self, lines: list[LineConfig]) -> LineCounter:
        return LineCounter(lines, self.band, hold_s=self.hold, join_s=self.join, smooth_s=self.smooth,
                           restart=self.restart)

    def __str__(self) -> str:
        return (f"band {self.band:g} hold {self.hold:g} smooth {self.smooth:g} "
                f"restart {'on' if self.restart else 'off'} join {self.join:g}")


OLD = Setting()  # the counter before: band 0.5 m, hold 0.5 s, no smoothing, no restart, no joining
GRID = [Setting(band, hold, smooth, restart, join) for band, hold, smooth, restart, join in
        itertools.product((0.5,), (0.5, 1.0), (0.0, 0.3), (False, True), (0.0, 2.0))]


def loss(es: Iterable[Errors]) -> float:
    """What a setting is chosen by: net plus gross error, each a share of the row's true crossings, summed."""
    return sum((e.net + e.gross) / max(e.true, 1) for e in es)


def choose(table: dict[tuple[Setting, int], Errors], rows: list[int]) -> Setting:
    """The grid's setting of least loss on `rows` (the first such, in grid order: the old counter first)."""
    return min(GRID, key=lambda st: loss(table[(st, i)] for i in rows))


def _cell(e: Errors) -> str:
    return f"{e.net:3d} {e.net / max(e.true, 1):5.1%} {e.gross:3d} {e.gross / max(e.true, 1):5.1%}"


def explain_run(run: Run, st: Setting) -> list[str]:
    """Each wrong crossing of `st` on `run`: missed (the gt person, the tracks that had them) or false (the
    track, whom it follows before and after: bench.lib.explain.Identity)."""
    from bench.lib.explain import Identity

    gt = gt_of(run)
    ident = Identity(run.rows or [], gt)
    counted = count(run, st.counter)
    e = errors(run, counted)
    side = int(3 * run.fps)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for f, ids, _, _ in run.ticks:
        for tid in ids.tolist():
            first.setdefault(tid, f)
            last[tid] = f
    span = lambda tid: f"t{tid} (frames {first.get(tid)}-{last.get(tid)})"  # noqa: E731
    out = [f"{run.scene} {run.rate}, {st}: net {e.net}, gross {e.gross} of {e.true}"]
    for i in e.missed:
        f, ln, d, g = run.truth[i]
        before = [t for t, _ in ident.tracks(g, range(f - side, f)).most_common(2)]
        after = [t for t, _ in ident.tracks(g, range(f, f + side)).most_common(2)]
        frag = "fragment" if before and after and not set(before) & set(after) else ""
        out.append(f"  missed {ln}{d} frame {f} gt {g}: tracks before {', '.join(map(span, before)) or 'none'}; "
                   f"after {', '.join(map(span, after)) or 'none'} {frag}")
    for j in e.false:
        f, tid, ln, d = counted[j]
        b, a = ident.follows(tid, range(f - side, f)), ident.follows(tid, range(f, f + side))
        kind = "false track" if b is None and a is None else ("ID swap" if None not in (a, b) and a != b else "")
        out.append(f"  false  {ln}{d} frame {f} {span(tid)}: follows gt {b} before, gt {a} after {kind}")
    return out


def gt_of(run: Run) -> np.ndarray:
    """The run's ground truth as MOT15-like rows (frame, id, x, y, w, h, 1, world x, world y, 0)."""
    if run.scene == PETS:
        return np.loadtxt(data.need(PETS_GT), delimiter=",", ndmin=2)
    from bench.lib.motscenes import scene

    return scene(run.scene).gt


def gt_fed(run: Run, gt: np.ndarray) -> Run:
    """The same run with a perfect tracker: on each of its ticks (the same source frames and tick times, so the
    same rate and the camera's skips) every gt person of that frame, by gt id, at the gt's own ground point.
    What a counter gets wrong on it is the counter's (or the sampling's) own share of the error, not the
    tracker's."""
    at: dict[int, list[np.ndarray]] = {}
    for row in gt:
        at.setdefault(int(row[0]), []).append(row)
    ticks = []
    for f, _, _, t in run.ticks:
        rows = np.array(at.get(f, []), dtype=np.float64).reshape(-1, gt.shape[1])
        ticks.append((f, rows[:, 1].astype(np.int64), rows[:, 7:9].copy(), t))
    return Run(run.scene, run.rate, run.fps, run.lines, ticks, run.truth)


def causes(run: Run, st: Setting, gt: np.ndarray) -> Counter:
    """`st`'s wrong crossings on `run` by cause, bench.lib.explain's: for a miss no track (the detector's misses
    among them: the runs keep no detections), fragmentation, ID swap, hold or grazing; for a false count false
    track, ID swap, double count, jitter or time. The counts are replayed through a Replay of the run (its
    tracker rows, exact ground points, the counter's crossings); the matching there prefers the counted crossing
    of the track that follows the person, so its total may differ from `errors`' by a crossing or two."""
    from bench.lib.explain import explain
    from bench.lib.replay import Replay

    ground: dict[int, list[tuple[int, float, float]]] = {}
    for f, ids, xy, _ in run.ticks:
        for tid, (x, y) in zip(ids.tolist(), xy.tolist(), strict=True):
            ground.setdefault(tid, []).append((f, x, y))
    frames = max(f for f, _, _, _ in run.ticks)
    rep = Replay([], list(run.rows or []), ground=ground, crossings=count(run, st.counter), frames=frames)
    findings, _ = explain(rep, gt, run.lines, run.fps)  # no detections recorded: a detector miss is "no track"
    return Counter(f"{f.kind} {'no track' if f.cause == 'detector miss' else f.cause}" for f in findings)


@data.clean_exit
def main(argv: list[str] | None = None) -> int:
    from bench.lib.motscenes import SCENES

    ap = argparse.ArgumentParser(prog="python -m bench.counting_loso", description=__doc__)
    ap.add_argument("--scenes", nargs="*", default=[PETS, *SCENES])
    ap.add_argument("--explain", nargs="*", default=None, metavar="SCENE",
                    help="print every wrong crossing on these scenes' rows, old counter and left-out choice")
    ap.add_argument("--causes", action="store_true",
                    help="per row, the left-out choice's wrong crossings by cause, and the same counter fed the "
                    "gt's own points on the row's ticks (a perfect tracker)")
    args = ap.parse_args(argv)
    data.ensure_env()
    rs = runs(args.scenes)
    table = {(st, i): errors(r, count(r, st.counter)) for st in GRID for i, r in enumerate(rs)}
    everything = choose(table, list(range(len(rs))))
    print(f"{'scene':<15} {'rate':<16} {'true':>4}   {'OLD net':>9} {'gross':>9}   {'LEFT-OUT net':>9} {'gross':>9}"
          f"   {'all-tuned net':>9} {'gross':>9}   left-out choice (tuned on the other scenes)")
    tot: dict[str, list[Errors]] = {"old": [], "out": [], "all": []}
    picks = {}
    for scene in dict.fromkeys(r.scene for r in rs):
        mine = [i for i, r in enumerate(rs) if r.scene == scene]
        others = [i for i, r in enumerate(rs) if r.scene != scene]
        picks[scene] = st = choose(table, others)
        for i in mine:
            old, out, best = table[(OLD, i)], table[(st, i)], table[(everything, i)]
            tot["old"].append(old)
            tot["out"].append(out)
            tot["all"].append(best)
            print(f"{scene:<15} {rs[i].rate:<16} {old.true:4d}   {_cell(old)}   {_cell(out)}   {_cell(best)}   {st}",
                  flush=True)
    summed = {k: Errors(sum(e.true for e in v), sum(e.net for e in v), [0] * sum(len(e.missed) for e in v),
                        [0] * sum(len(e.false) for e in v)) for k, v in tot.items()}
    print(f"{'all rows':<15} {'':<16} {summed['old'].true:4d}   {_cell(summed['old'])}   {_cell(summed['out'])}   "
          f"{_cell(summed['all'])}")
    print(f"tuned on everything: {everything}")
    print("(net: per line and way, |counted - true| summed; gross: crossings matched one by one, misses plus false "
          f"counts, at most {WINDOW_S:g} s apart; goal at the Pi rate: net <= 5%, gross <= 10%; OLD: {OLD}; "
          "LEFT-OUT: the setting of least summed (net + gross) / true on the other scenes' rows; all-tuned: the "
          "same over every row, shown beside it only)")
    if args.causes:
        print("\nleft-out choice per row: wrong crossings by cause (bench.lib.explain), and the same counter on the "
              "gt's own points at the row's ticks (gt-fed: a perfect tracker, the counter's and the rate's share)")
        for i, r in enumerate(rs):
            st, gt = picks[r.scene], gt_of(r)
            fed = errors(gt_fed(r, gt), count(gt_fed(r, gt), st.counter))
            tally = ", ".join(f"{n} {c}" for c, n in causes(r, st, gt).most_common())
            print(f"{r.scene:<15} {r.rate:<16} net/gross {table[(st, i)].net:3d} {table[(st, i)].gross:3d}   gt-fed "
                  f"{fed.net:3d} {fed.gross:3d}   [{tally}]", flush=True)
    for name in args.explain or []:
        for r in rs:
            if r.scene == name:
                for st in (OLD, picks[name]):
                    print("\n".join(explain_run(r, st)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
